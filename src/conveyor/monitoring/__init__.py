"""Monitoring: is the world still the one the model learned from?

`drift.py` compares a reference (a dataset version, or the profile stored with a model
version) with current data, column by column, with the detectors registered in
`detector.py`. The rules are in DRIFT.md.
"""
