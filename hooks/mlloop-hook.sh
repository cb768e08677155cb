#!/bin/sh
# The plugin's hooks run `mlloop hook EVENT` (the hook input arrives on stdin and is passed on).
# mlloop is found as $MLLOOP_PYTHON -m mlloop, else `mlloop` on PATH. Without it the hooks do
# nothing, so a missing CLI never blocks a session; in a project that has dataset/rawdata/ the
# SessionStart hook says how to install it. Projects set up with `mlloop init` have their own
# hooks in .claude/settings.json and do not need this plugin's.
if [ -n "${MLLOOP_PYTHON:-}" ]; then
  exec "$MLLOOP_PYTHON" -m mlloop hook "$@"
fi
if command -v mlloop >/dev/null 2>&1; then
  exec mlloop hook "$@"
fi
cat >/dev/null
if [ "${1:-}" = "session-start" ] && [ -d "${CLAUDE_PROJECT_DIR:-.}/dataset/rawdata" ]; then
  echo "The mlloop plugin is enabled but the mlloop CLI was not found (neither \$MLLOOP_PYTHON nor mlloop on PATH); install it (for example: uv tool install <path to the mlloop repository>) so the skills' commands and checks work."
fi
exit 0
