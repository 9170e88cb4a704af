# Shared by the benchmarks' setup.sh scripts, which set ENVS (the envs folder), PYTHON,
# FORCE (1: rebuild) and CONSTRAINTS (a pip constraints file) before sourcing this.

new_env() {  # new_env NAME: succeeds (after emptying it) when NAME must be (re)built
    local dir="$ENVS/$1"
    if [[ -f "$dir/.ready" && $FORCE -eq 0 ]]; then
        return 1
    fi
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    return 0
}

pip_in() {  # pip_in NAME ARGS...
    local name="$1"
    shift
    # The machine's pip config lists local indexes that lack most packages: drop the
    # warnings about them, keep everything else pip says.
    "$ENVS/$name/bin/python" -m pip install --quiet -c "$CONSTRAINTS" "$@" \
        2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}
