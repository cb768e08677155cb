"""What a shell command may write: the PreToolUse hook's reading of a Bash command.

Conservative, not a sandbox: the command is split with ``shlex`` into simple commands (at
``;``, ``&&``, ``||``, ``|``, ``&``, newlines, subshells, ``$(...)`` and backticks), and each is
read for the paths it writes: redirections (``>``, ``>>``, ``&>``, ``>|``), ``tee``, in-place
editors (``sed -i``, ``perl -i``), ``cp``/``mv``/``install``/``rsync``/``ln`` destinations (and
``mv``'s sources, which it removes), ``rm``/``truncate``/``touch``/``chmod``…, ``dd of=``,
``curl -o``, ``git checkout/restore/rm/mv`` paths, whole-tree git commands (``reset --hard``,
``clean``, ``stash``), ``find … -delete/-exec``. Code given inline to an interpreter
(``python -c``, ``python - <<EOF``, ``perl -e``, ``node -e``) is returned as text for the caller
to judge; ``sh -c``, ``bash <<EOF`` and ``eval`` are read recursively. A script run from a file
(``python train.py``) is not looked into.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field

MAX_DEPTH = 4            # sh -c "sh -c '...'" nesting read before giving up
SEPARATORS = {";", "&&", "||", "|", "|&", "&", "(", ")", ";;"}
REDIRECTS_OUT = {">", ">>", ">|", "&>", "&>>", ">&", "<>"}
PUNCT_RE = re.compile(r"&>>|&>|>>|>\||>&|<<<|<<-|<<|<>|<&|>|<|&&|\|\||;;|\|&|;|\||&|\(|\)")
HEREDOC_RE = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
ASSIGN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
INTERPRETER_RE = re.compile(r"^(python[0-9.]*|pypy[0-9.]*|perl|ruby|node|nodejs|deno|bun|Rscript|php|lua)$")
SHELLS = {"sh", "bash", "zsh", "dash", "ksh"}
WRAPPERS = {"sudo", "nohup", "time", "command", "exec", "builtin", "stdbuf", "nice", "ionice", "timeout", "env",
            "chronic", "unbuffer"}
# name -> "all" (every non-option argument is written), "dest" (the last one, cp-like), or a
# special reading below. Option values to skip are listed in VALUED.
WRITERS = {"tee": "all", "rm": "all", "unlink": "all", "shred": "all", "rmdir": "all", "truncate": "all",
           "touch": "all", "cp": "dest", "install": "dest", "rsync": "dest", "scp": "dest", "ln": "dest",
           "mv": "move", "chmod": "after1", "chown": "after1", "chgrp": "after1", "setfacl": "all",
           "ed": "all", "ex": "all", "vi": "all", "vim": "all", "nvim": "all", "nano": "all", "emacs": "all",
           "patch": "all", "split": "all", "csplit": "all"}
VALUED = {"truncate": {"-s", "--size", "-r", "--reference"}, "touch": {"-d", "-t", "-r", "--date", "--reference"},
          "cp": {"-t", "--target-directory", "-S", "--suffix"}, "mv": {"-t", "--target-directory", "-S", "--suffix"},
          "install": {"-m", "-o", "-g", "-t", "-S", "--mode", "--owner", "--group", "--target-directory"},
          "ln": {"-t", "-S", "--target-directory"}, "rsync": {"-e", "--rsh", "--exclude", "--include", "-f"},
          "sed": {"-e", "-f", "--expression", "--file", "-l"}, "perl": {"-e", "-E", "-M", "-I"},
          "patch": {"-p", "-i", "-d", "-o", "-r", "-B", "-F", "-z"}, "shred": {"-n", "-s"},
          "split": {"-l", "-b", "-n", "-a", "-C"}}


@dataclass(frozen=True)
class Target:
    """A path the command writes (as written: relative to the command's folder, maybe a glob).
    ``tree``: everything under it is written too (rm -r, mv of a folder, a copy into it);
    ``names``: only files matching these patterns under the tree (``find -name``)."""

    word: str
    how: str
    tree: bool = False
    names: tuple[str, ...] = ()


@dataclass
class ShellWrites:
    targets: list[Target] = field(default_factory=list)
    code: list[tuple[str, str]] = field(default_factory=list)   # (how, inline program text)
    opaque: list[tuple[str, str]] = field(default_factory=list)  # (how, text) writes whose targets are unknown


def write_targets(command: str, env: dict[str, str] | None = None) -> ShellWrites:
    """The writes of ``command``; target words are relative to the folder it starts in (``cd``
    inside the command is followed) and may still hold glob characters."""
    out = ShellWrites()
    _read(command, {**(env or {}), WHOLE: command}, out, 0)
    return out


CWD = "\0cwd"   # the env entry that holds the folder `cd` moved to (relative, "" at the start)
WHOLE = "\0command"  # ... and the whole command (what feeds an `xargs` is somewhere in it)


def _read(command: str, env: dict[str, str], out: ShellWrites, depth: int) -> None:
    if depth > MAX_DEPTH:
        out.opaque.append(("deeply nested shell", command))
        return
    text, bodies = _split_heredocs(command)
    # Substitutions run even inside double quotes, where the lexer below keeps them in one word.
    for inner in re.findall(r"\$\(([^()]*)\)", text) + re.findall(r"`([^`]*)`", text):
        if '"' in text:
            _read(inner, env, out, depth + 1)
    text = text.replace("\\\n", " ").replace("`", " ; ").replace("\n", " ; ")
    text = re.sub(r"[$<>]\(", " ( ", text)  # $(...), <(...), >(...): their commands run too
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        lexer.commenters = ""
        tokens = list(lexer)
    except ValueError:  # an unclosed quote: read the words roughly, never trust it less
        tokens = text.replace('"', " ").replace("'", " ").split()
    words: list[str] = []
    redirects: list[tuple[str, str]] = []
    pending = None
    stack: list[str] = []   # the folder before each subshell: `(cd x; ...)` does not move the rest
    for token in tokens:
        if token and all(c in ";&|()<>" for c in token):
            for piece in PUNCT_RE.findall(token):
                if piece in SEPARATORS:
                    _simple(words, redirects, env, out, depth, bodies)
                    words, redirects, pending = [], [], None
                    if piece == "(":
                        stack.append(env.get(CWD, ""))
                    elif piece == ")" and stack:
                        env[CWD] = stack.pop()
                else:
                    pending = piece
            continue
        if pending is not None:
            redirects.append((pending, token))
            pending = None
            continue
        words.append(token)
    _simple(words, redirects, env, out, depth, bodies)


def _split_heredocs(command: str) -> tuple[str, dict[str, str]]:
    """Take here-document bodies out of the command text: ``<<EOF`` becomes ``<< @heredocN``."""
    lines = command.split("\n")
    kept, bodies, i = [], {}, 0
    while i < len(lines):
        pending = []

        def mark(m: re.Match) -> str:
            key = f"@heredoc{len(bodies) + len(pending)}"
            pending.append((key, bool(m.group(1)), m.group(3)))
            return f"<< {key}"

        kept.append(HEREDOC_RE.sub(mark, lines[i]))
        i += 1
        for key, strip_tabs, delimiter in pending:
            body = []
            while i < len(lines) and (lines[i].lstrip("\t") if strip_tabs else lines[i]) != delimiter:
                body.append(lines[i])
                i += 1
            i += 1
            bodies[key] = "\n".join(body)
    return "\n".join(kept), bodies


def _simple(words: list[str], redirects: list[tuple[str, str]], env: dict[str, str], out: ShellWrites,
            depth: int, bodies: dict[str, str]) -> None:
    stdin = None
    start = len(out.targets)
    for op, word in redirects:
        if op in REDIRECTS_OUT:
            if not (op == ">&" and word.isdigit()) and word != "-":
                out.targets.append(Target(_expand(word, env), f"a `{op}` redirection"))
        elif op in ("<<", "<<-"):
            stdin = bodies.get(word, "")
        elif op == "<<<":
            stdin = word
    while words and ASSIGN_RE.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = _expand(value, env)
    words = _unwrap(words)
    if not words:
        return
    words = [_expand(w, env) for w in words]
    try:
        _program(os.path.basename(words[0]), words[1:], words, stdin, env, out, depth)
    finally:  # targets are relative to where `cd` left the command
        cwd = env.get(CWD, "")
        if cwd:
            out.targets[start:] = [t if os.path.isabs(t.word) else Target(os.path.join(cwd, t.word), t.how, t.tree,
                                                                          t.names) for t in out.targets[start:]]


def _program(name: str, args: list[str], words: list[str], stdin: str | None, env: dict[str, str],
             out: ShellWrites, depth: int) -> None:
    if name in ("cd", "pushd"):
        dest = _operands(args)
        here = env.get(CWD, "")
        env[CWD] = os.path.normpath(os.path.join(here, dest[0])) if dest and dest[0] != "-" else os.path.expanduser("~")
        return
    if name in SHELLS:
        if "-c" in args and args.index("-c") + 1 < len(args):
            _read(args[args.index("-c") + 1], env, out, depth + 1)
        elif stdin is not None and not _operands(args):
            _read(stdin, env, out, depth + 1)
        return
    if name == "eval":
        _read(" ".join(args), env, out, depth + 1)
        return
    if INTERPRETER_RE.match(name):
        _interpreter(name, args, stdin, out)
        return
    if name == "xargs":
        program = _operands(args, {"-I", "-L", "-n", "-P", "-d", "-E", "-s", "-a"})
        if program and (os.path.basename(program[0]) in WRITERS or os.path.basename(program[0]) in ("sed", "perl")
                        or INTERPRETER_RE.match(os.path.basename(program[0]))):
            out.opaque.append((f"`xargs {os.path.basename(program[0])}`", env.get(WHOLE, " ".join(words))))
        return
    if name == "find":
        _find(args, out)
        return
    if name == "git":
        _git(args, out)
        return
    if name == "dd":
        out.targets += [Target(a[3:], "`dd of=`") for a in args if a.startswith("of=")]
        return
    if name in ("curl", "wget"):
        for i, a in enumerate(args[:-1]):
            if a in ("-o", "--output", "-O", "--output-document"):
                out.targets.append(Target(args[i + 1], f"`{name} {a}`"))
        return
    if name == "sed" and _in_place(name, args):
        files = _operands(args, VALUED.get(name, set()))
        if name == "sed" and not any(a in ("-e", "--expression", "-f", "--file") for a in args):
            files = files[1:]  # the first operand is the script
        out.targets += [Target(f, f"`{name} -i`") for f in files]
        return
    if name in ("awk", "gawk") and "inplace" in args:
        out.targets += [Target(f, f"`{name} -i inplace`") for f in _operands(args, {"-i", "-f", "-v", "-F"})]
        return
    kind = WRITERS.get(name)
    if kind is None:
        return
    operands = _operands(args, VALUED.get(name, set()))
    how = f"`{name}`"
    recursive = any(a in ("-r", "-R", "-a", "--recursive", "--archive") or
                    (a.startswith("-") and not a.startswith("--") and set(a[1:]) & set("rRa")) for a in args)
    if kind == "all":
        out.targets += [Target(o, how, tree=name in ("rm", "chmod", "chown", "chgrp", "setfacl") and recursive)
                        for o in operands]
    elif kind == "after1":
        out.targets += [Target(o, how, tree=recursive) for o in operands[1:]]
    elif kind in ("dest", "move"):
        target_dir = _option_value(args, ("-t", "--target-directory"))
        sources, dest = (operands, target_dir) if target_dir else (operands[:-1], operands[-1] if operands else None)
        if kind == "move":
            out.targets += [Target(s, how, tree=True) for s in sources]
        if name == "ln":  # a link to a protected file is a way to write it later
            out.targets += [Target(s, how) for s in sources]
        if dest is not None:
            out.targets.append(Target(dest, how, tree=recursive or kind == "move"))
            out.targets += [Target(dest.rstrip("/") + "/" + os.path.basename(s.rstrip("/")), how,
                                   tree=recursive or kind == "move") for s in sources]


def _unwrap(words: list[str]) -> list[str]:
    """Drop command prefixes that run the rest (`sudo`, `env X=1`, `nice -n 5`, `timeout 60`,
    `uv run --with x`), so the real program is read."""
    while words:
        head = os.path.basename(words[0])
        if head in WRAPPERS:
            words = words[1:]
            while words and (words[0].startswith("-") or ASSIGN_RE.match(words[0])
                             or (head == "timeout" and re.match(r"^[0-9.]+[smhd]?$", words[0]))):
                if words[0] in ("-n", "-u", "-s", "-k", "-c", "-C") and len(words) > 1:
                    words = words[1:]
                words = words[1:]
        elif head in ("uv", "poetry", "pipenv", "conda", "pdm", "hatch") and len(words) > 1 and words[1] == "run":
            words = words[2:]
            while words and words[0].startswith("-"):
                if words[0] in ("--with", "--python", "-p", "--project", "--directory", "--env-file", "-n",
                                "--name", "--package", "--extra", "--group") and len(words) > 1:
                    words = words[1:]
                words = words[1:]
        elif head == "uvx" or head == "npx":
            words = words[1:]
        else:
            break
    return words


def _operands(args: list[str], valued: set[str] = frozenset()) -> list[str]:
    out, skip, literal = [], False, False
    for a in args:
        if skip:
            skip = False
            continue
        if literal or not a.startswith("-") or a == "-":
            out.append(a)
        elif a == "--":
            literal = True
        elif a in valued:
            skip = True
    return out


def _option_value(args: list[str], names: tuple[str, ...]) -> str | None:
    for i, a in enumerate(args):
        if a in names and i + 1 < len(args):
            return args[i + 1]
        for n in names:
            if n.startswith("--") and a.startswith(n + "="):
                return a[len(n) + 1:]
    return None


def _in_place(name: str, args: list[str]) -> bool:
    for a in args:
        if a == "--":
            break
        if a.startswith("--in-place"):
            return True
        if a.startswith("-") and not a.startswith("--"):
            flags = a[1:]
            if name == "sed" and re.match(r"^[nrEsuz]*i", flags):
                return True
            if name in ("perl", "ruby") and re.match(r"^[a-zA-Z]*i", flags) and "i" in flags.split("e")[0]:
                return True
    return False


def _interpreter(name: str, args: list[str], stdin: str | None, out: ShellWrites) -> None:
    how = f"`{name}` inline code"
    if name.startswith(("perl", "ruby")) and _in_place(name[:4], args):
        out.targets += [Target(f, f"`{name} -i`") for f in _operands(args, VALUED["perl"])]
    for flag in ("-c", "-e", "-E", "--eval", "-p", "--print"):
        if flag in args and args.index(flag) + 1 < len(args):
            out.code.append((how, " ".join(args[args.index(flag) + 1:])))
            return
    operands = [a for a in args if not a.startswith("-") or a == "-"]
    if stdin is not None and (not operands or operands[0] == "-"):
        out.code.append((how, stdin))


def _find(args: list[str], out: ShellWrites) -> None:
    starts = []
    for a in args:
        if a.startswith("-") or a in ("!", "("):
            break
        starts.append(a)
    names = tuple(args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-name", "-iname"))
    for i, a in enumerate(args):
        if a in ("-fprint", "-fprint0", "-fprintf", "-fls") and i + 1 < len(args):
            out.targets.append(Target(args[i + 1], f"`find {a}`"))
    writes = "-delete" in args
    for i, a in enumerate(args[:-1]):
        if a in ("-exec", "-execdir", "-ok", "-okdir"):
            program = os.path.basename(args[i + 1])
            writes = writes or program in WRITERS or program in SHELLS or program in ("sed", "perl", "dd") \
                or bool(INTERPRETER_RE.match(program))
    if writes:
        out.targets += [Target(s, "`find -delete/-exec`", tree=True, names=names) for s in (starts or ["."])]


def _git(args: list[str], out: ShellWrites) -> None:
    sub_i = next((i for i, a in enumerate(args) if not a.startswith("-")), None)
    if sub_i is None:
        return
    sub, rest = args[sub_i], args[sub_i + 1:]
    how = f"`git {sub}`"
    if sub in ("checkout", "restore", "rm"):
        paths = rest[rest.index("--") + 1:] if "--" in rest else _operands(rest, {"-s", "--source", "-b", "-B"})
        out.targets += [Target(p, how, tree=True) for p in paths]
    elif sub == "mv":
        ops = _operands(rest)
        out.targets += [Target(p, how, tree=True) for p in ops]
    elif (sub == "reset" and "--hard" in rest) or sub == "clean" or \
            (sub == "stash" and (not rest or rest[0] in ("push", "save", "-u", "--include-untracked", "-a", "--all"))):
        out.targets.append(Target(".", how, tree=True))
    elif sub in ("apply", "am", "cherry-pick", "revert", "merge", "pull", "rebase", "switch"):
        out.opaque.append((how, " ".join(args)))


_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def _expand(word: str, env: dict[str, str]) -> str:
    """``~`` and the variables we know; an unknown one becomes ``*`` (the caller globs it)."""
    if word.startswith("~"):
        word = os.path.expanduser(word)
    return _VAR_RE.sub(lambda m: env.get(m.group(1) or m.group(2), "*"), word)
