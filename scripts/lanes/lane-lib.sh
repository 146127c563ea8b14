# Shared by the lane scripts (sourced, not run). A lane prints one closing line:
#   lane NAME: N tests, P pass, F fail
# counting its own checks (`lane_check`) and the node test files it ran (`lane_node_tests`, read from TAP).
lane_tests=0 lane_pass=0 lane_fail=0 lane_skipped=0

# lane_check DESCRIPTION CMD...: one test; its output goes to the log, its verdict to the counts.
lane_check() {
  local what=$1
  shift
  lane_tests=$((lane_tests + 1))
  if "$@"; then
    lane_pass=$((lane_pass + 1))
    echo "ok - $what"
  else
    lane_fail=$((lane_fail + 1))
    echo "not ok - $what"
  fi
}

# lane_add_tap FILE: adds the summary of a node test run (TAP reporter) to the counts.
lane_add_tap() {
  local file=$1 n p f s
  n=$(sed -nE 's/^# tests ([0-9]+)$/\1/p' "$file" | tail -n1)
  p=$(sed -nE 's/^# pass ([0-9]+)$/\1/p' "$file" | tail -n1)
  f=$(sed -nE 's/^# fail ([0-9]+)$/\1/p' "$file" | tail -n1)
  s=$(sed -nE 's/^# skipped ([0-9]+)$/\1/p' "$file" | tail -n1)
  if [[ -z $n ]]; then
    # A run that died before its summary counts as one failure, never as nothing.
    lane_tests=$((lane_tests + 1)) lane_fail=$((lane_fail + 1))
    echo "not ok - $file has no test summary"
    return
  fi
  lane_tests=$((lane_tests + n)) lane_pass=$((lane_pass + p)) lane_fail=$((lane_fail + f))
  lane_skipped=$((lane_skipped + ${s:-0}))
}

# lane_summary NAME [WORD]: prints the closing line (WORD `part` for a part that a lane script folds into its own
# line); returns non-zero when anything failed or nothing ran.
lane_summary() {
  local extra=''
  ((lane_skipped > 0)) && extra=", $lane_skipped skipped"
  echo "${2:-lane} $1: $lane_tests tests, $lane_pass pass, $lane_fail fail$extra"
  ((lane_fail == 0 && lane_tests > 0))
}

# lane_add_part LOG: adds a part's closing line (see lane_summary) found in LOG; a part without one is a failure.
lane_add_part() {
  local line
  line=$(grep -E '^part [a-z0-9-]+: [0-9]+ tests' "$1" | tail -n1 || true)
  if [[ $line =~ :\ ([0-9]+)\ tests,\ ([0-9]+)\ pass,\ ([0-9]+)\ fail(,\ ([0-9]+)\ skipped)? ]]; then
    lane_tests=$((lane_tests + BASH_REMATCH[1])) lane_pass=$((lane_pass + BASH_REMATCH[2]))
    lane_fail=$((lane_fail + BASH_REMATCH[3])) lane_skipped=$((lane_skipped + ${BASH_REMATCH[5]:-0}))
  else
    lane_tests=$((lane_tests + 1)) lane_fail=$((lane_fail + 1))
    echo "not ok - $1 ended without its counts"
  fi
}

# lane_stage_repo REPO DEST: a snapshot of REPO's files (no .git; node_modules as a link to the real one), taken
# before anything else, so a build running beside the lane (CI runs `npm test` in the same checkout) cannot
# change dist/ under it.
lane_stage_repo() {
  local src=$1 dest=$2
  rm -rf "$dest" && mkdir -p "$dest"
  tar -C "$src" --exclude=./.git --exclude=./node_modules -cf - . | tar -C "$dest" -xf -
  ln -s "$(readlink -f "$src/node_modules")" "$dest/node_modules"
}
