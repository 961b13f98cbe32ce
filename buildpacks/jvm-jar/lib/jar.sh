# shellcheck shell=bash
# Shared by bin/compile and bin/release of the jvm-jar buildpack (sourced, not run).

# main_jar BUILD_DIR: print the path of the executable jar to run. With several, prefer one whose
# name does not look like a library (-sources, -javadoc, -plain), then the largest.
main_jar() {
    local dir=$1 jar best='' best_size=-1 size
    shopt -s nullglob
    for jar in "$dir"/*.jar; do
        unzip -p "$jar" META-INF/MANIFEST.MF 2>/dev/null | tr -d '\r' | grep -qi '^Main-Class: *[^ ]' || continue
        case "${jar##*/}" in *-sources.jar|*-javadoc.jar|*-plain.jar|*-tests.jar) continue ;; esac
        size=$(stat -c %s "$jar")
        if [ "$size" -gt "$best_size" ]; then best=$jar; best_size=$size; fi
    done
    [ -n "$best" ] && printf '%s\n' "$best"
}

# manifest_attr JAR NAME: the value of a main manifest attribute (continuation lines joined)
manifest_attr() {
    unzip -p "$1" META-INF/MANIFEST.MF 2>/dev/null | tr -d '\r' \
        | awk -v want="$2" '
            /^ / { if (cur) val = val substr($0, 2); next }
            cur { print val; found = 1; exit }
            tolower($0) ~ "^" tolower(want) ":" { cur = 1; val = $0; sub(/^[^:]*: */, "", val) }
            END { if (cur && !found) print val }'
}

# shell_quote WORD: WORD quoted for a POSIX shell command line
shell_quote() {
    case "$1" in
        *[!A-Za-z0-9_./:=+-]*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
        *) printf '%s' "$1" ;;
    esac
}

# yaml_scalar TEXT: TEXT as a YAML scalar: plain when that is unambiguous, else single-quoted
yaml_scalar() {
    case "$1" in
        *': '*|*' #'*|*\'*|*\"*|[-?:,\[\]{}#\&*!\|\>%@\`]*|*:) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")" ;;
        *) printf '%s' "$1" ;;
    esac
}
