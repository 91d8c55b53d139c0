"""aider: no tool calls. Edits are SEARCH/REPLACE (or whole-file) blocks in the reply's text; aider
answers a failed edit, a lint report or a failed test run with a user message of its own; the
person's messages come between. Raw histories are `.aider.chat.history.md` files, where aider's own
output is the `> ` lines and the person's messages the `#### ` lines."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .base import (
    ENVIRONMENT,
    Evidence,
    Finding,
    Kind,
    Message,
    Reader,
    Transcript,
    anchored_error,
    first_match,
    quoted_away,
    text_of,
)
from .words import Gated

__all__ = ["READER"]

# What aider tells the model when its reply could not be applied, and its lint and test reports.
EDIT_FAILED = Gated(
    re.compile(
        r"(SEARCH/REPLACE blocks? failed to match|did not conform to the edit format|No filename provided before|"
        r"Bad/missing filename|The SEARCH section must exactly match|Only \d+ reflections allowed|"
        r"has hit a token limit|\^\^\^ Expected|Expected `=======`|"
        # aider of 2023 (0.1x), before it told the model: its console's word, kept in the history
        r"Malformed response #\d+, (?:retrying|aborting)|InvalidEditBlock: edit failed|"
        r"UnifiedDiffNoMatch: hunk failed)",
        re.I | re.A,  # (its words are ASCII: so is what it matches)
    ),
    (
        "search/replace", "did not conform", "no filename provided", "bad/missing filename", "must exactly match",
        "reflections allowed", "token limit", "^^^ expected", "expected `=======`", "malformed response #",
        "invalideditblock", "unifieddiffnomatch",
    ),
)  # fmt: skip
# aider's `/help QUESTION` sends the model the question and pages of aider's documentation, which quote its
# reports ("has hit a token limit"): the person's question, not a report.
_HELP = re.compile(r"\A# Question: ([^\n]*)\n(?:[^\S\n]*\n)*# Relevant docs:")
# aider before 0.10 (2023), on its console only: the history keeps it, the model was never told
_NOT_APPLIED = re.compile(r"^Failed to apply edit to \S", re.M)
LINT = re.compile(r"^# Fix any errors below, if possible\.", re.M)
# The files a lint report shows (a name, then its numbered lines); its syntax check of markup flags valid
# pages and components, so a report on markup alone is no evidence.
_LINTED = re.compile(r"^(\S[^\n]*?):\n(?:\.\.\.⋮\.\.\.|\s*\d+[│█])", re.M)
_MARKUP = (".html", ".htm", ".css", ".scss", ".sass", ".less", ".astro", ".vue", ".svelte", ".xml", ".md", ".mdx")


_FINDING = re.compile(r"^\S+:\d+:\d+: [A-Z]+\d+ ", re.M)  # flake8's `file:line:col: F821 ...`


def _lint(text: str) -> Kind | None:
    """What a lint report says: `None` (markup only, no linter ran), "environment" (the linter itself
    could not run), or "task_failure"."""
    ran = "## Running:" in text
    # the linter's own output, not the lines of code aider shows under it (`api_key=...`); one that reported
    # a finding ran
    said = text.split("## See relevant lines", 1)[0]
    if ran and first_match(ENVIRONMENT, said) is not None and not _FINDING.search(said):
        return "environment"
    files = _LINTED.findall(text)
    if not ran and files and all(f.strip().lower().endswith(_MARKUP) for f in files):
        return None
    return "task_failure"


_UNDONE = re.compile(r"^(?:/(?:undo|und|un|u)\b|I did `git reset --hard HEAD~1` to discard the last edits)")
RAN = re.compile(r"I ran this command:", re.I)
# The person pressed Ctrl-C while the reply streamed: the reply was refused.
INTERRUPTED = re.compile(r"\^C again to exit|KeyboardInterrupt", re.I)
_AIDER_SAYS = "[aider]"
# aider's commands that show the repository, and an empty input (`<blank>` in a history): no model call,
# the chat unchanged, so what the person says after them is still about the reply (one about a command's
# own output, `/tokens`, `/models`, is not)
_LOOK = re.compile(r"\A\s*(?:/(?:map|map-refresh|ls|diff)|<blank>)\s*\Z")
# A command aider answers itself (`/undo`, `/add x`, `/help` alone, an empty input; a mistyped one, which aider
# calls invalid): no reply of the model's to judge (`/run`, `/test`: `_RAN_CMD`). (`/ask`, `/code`, `/architect`,
# `/help QUESTION`, `/lint`, `/test`, `/commit`, and any unique prefix of them, may call the model.)
_OWN = re.compile(
    r"\A\s*/(?:undo|und|un|u|add|drop|read-only|clear|reset|tokens|ls|diff|map|map-refresh|models?|settings|exit|quit|"
    r"copy|paste|git|voice|editor|save|load|report|multiline-mode|chat-mode)\b|"
    r"\A\s*(?:/help|/ask|/code|/architect|/context|<blank>)\s*\Z"  # a mode's command alone only switches
)
# A command aider answers itself, as the request of an empty reply: any but those that may call the model
# (`_OWN` lists the full names; aider takes any unique prefix, `/ex`).
_OWN_COMMAND = re.compile(r"\s*/(?!(?:ask|code|architect|context|help|lint|test)\b)[a-z-]+(?:\s|$)")
# A chat mode's command before the person's message (`/ask why is it slow?`): what follows is their words.
_MODE = re.compile(r"\A\s*/(?:ask|code|architect|context)[^\S\n]+(?=\S)")
_ADDED = re.compile(r"^Add (?:file|these files) to the chat\?[^\n]*: (?:y|yes|a|all)\s*$", re.M | re.I)
# aider's report that its call to the model failed (LiteLLM's exception names: rate limit, no key, outage)
# (newer: `BadRequestError: litellm.BadRe...`; on an error aider did not expect: `Unexpected error: litellm...`)
_CALL_FAILED = re.compile(r"^(?:\w+Error: |Unexpected error: )?litellm\.\w+Error\b.*$", re.M)
_ANSWERED = re.compile(r"^Tokens: ", re.M)  # aider's report of a model call that answered
# aider's reports that a call came back, if only with nothing or at a limit: Ctrl-C after them stops nothing
_RETURNED = re.compile(r"Tokens: |Model .* has hit a token limit|Empty response received")
_EMPTY = re.compile(r"^Empty response received from LLM", re.M)  # aider's word for a reply of nothing
# aider's own code failing as it applied the reply's edits for want of a module or a name of one (a LiteLLM it was
# upgraded past): every retry meets it, whatever the model writes, as the lead's edits would. (Its other
# exceptions there, an index out of range reading a malformed block, a file name too long, are the reply's.)
_CRASHED = re.compile(
    r"^Exception while updating files:[^\S\n]*\n("
    r"(?:module '[\w.]+' has no attribute|No module named|cannot import name)[^\n]*)$",
    re.M,
)
# aider could not write a file the reply named (an OS error): a name no file can have is the reply's
_UNABLE = re.compile(r"^Unable to create (.+?), skipping edits\.?$", re.M)
# aider applying a whole-file or SEARCH/REPLACE block to the line the model put before it: a filename
# with spaces or prose punctuation, or a bare word that names no file kind, is a block it misread.
APPLIED = re.compile(r"^(?:Applied edit to|Creating empty file) (.+)$", re.M)
# aider failing to write an edit's file (a system file, a folder named as a file): the edit did not land. As
# aider reports it (not a log line quoted with the same words): the error again on the next line (0.63.2 and
# later), or "Applied edit to" the same file after it (0.55 to 0.63.1 went on as if it had been written).
_UNWRITTEN = re.compile(r"^Unable to write file (\S[^\n]*?): (\[Errno \d+\] [^\n]*)$", re.M)


def _unwritten(text: str) -> re.Match[str] | None:
    for m in _UNWRITTEN.finditer(text):
        rest = text[m.end() + 1 :]
        if rest.split("\n", 1)[0] == m[2]:
            return m
        path = m[1].replace("\\", "/")
        if any(path.endswith("/" + p.replace("\\", "/")) or path == p for p in APPLIED.findall(rest)):
            return m
    return None


# The end of an edit block in the reply (SEARCH/REPLACE, or the ORIGINAL/UPDATED of other tools).
_BLOCK_END = re.compile(r"^>{7} ?(?:REPLACE|UPDATED)\s*$", re.M)
# An edit in any of aider's formats: a block's end, a whole file (its name, then a fence), a unified diff
# (its file lines, then a hunk), a patch.
_EDITS = re.compile(
    _BLOCK_END.pattern + r"|^[\w.~/\\-]+\.\w+[^\S\n]*\n`{3}|^\+\+\+ [^\n]*\n@@ |^\*\*\* Begin Patch", re.M
)
# The person answering no when aider asks to write the reply's edit to a file: the edit is refused. (Declining
# a suggested shell command is not: the person often runs it their own way; nor architect mode's "Edit the
# files?", which it asks after every answer, a question back or advice included.)
REFUSED = re.compile(
    # (older versions ask "Allow creation of new file x?")
    r"^(?:Create new file\?(?:.*\]:)?|Allow (?:edits to|creation of new file) [^\n?]*\?(?:.*(?:\]:|\?))?) *"
    r"(?:n|no|d|s|skip|don't)\b",
    re.M | re.I,
)
# aider names a file the reply mentions, then asks to add it: Ctrl-C while that question waits refuses the
# reply's edits (with none, it declines a file the person did not need and leaves: an answer stands).
_ASKED = re.compile(r"^[\w.~/-]+\.\w+$")
_QUESTION = re.compile(r"[^\n]*\? \(Y\)es/\(N\)o")
_NAMELESS = frozenset(
    "makefile dockerfile containerfile gemfile rakefile procfile vagrantfile jenkinsfile brewfile podfile "
    "justfile caddyfile license licence readme changelog authors notice version codeowners copying".split()
)
# The marker the raw-history reader puts on aider's own output; the format rules aider appends to a report.
_REMINDER = "# *SEARCH/REPLACE block* Rules:"
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")


def _watched(text: str) -> int | None:
    """Where aider's request for a watched file's "AI" comments (--watch-files) ends: its paragraph, up to
    the comments it quotes (aider's words, the same every time; the person's are in the comments). None:
    not such a request. (Plain searches: a pattern over the lines backtracked for seconds on a crafted one.)"""
    if text.find('"AI" comments', 0, 4000) < 0:  # (most messages: nothing copied, nothing split)
        return None
    first = text[:4000]
    start = len(first) - len(first.lstrip())
    head = text[start : start + 4000]
    if not any('"AI" comments' in line and "(marked with █)" in line for line in head.split("\n", 3)[:3]):
        return None
    blank = _BLANK_LINE.search(head)
    return start + (blank.end() if blank else len(head))


class Aider(Reader):
    name = "aider"

    def detect(self, messages: Sequence[Message], system: str) -> bool:
        # Its edit-block formats say SEARCH/REPLACE; every code format (whole files, the default with a
        # model aider does not know) opens with these two lines, both asked for: one alone is a line a
        # home-made assistant may have copied. Found in place, not in a copy of the prompt's start.
        return system.find("SEARCH/REPLACE", 0, 20000) >= 0 or (
            system.find("Act as an expert software developer.", 0, 400) >= 0
            and system.find("Take requests for changes to the supplied code.", 0, 4000) >= 0
        )

    def human(self, msg: Message) -> bool:
        # (the mode's command stays in what `asked_again` compares: `/ask X` then `/code X` applies what was discussed)
        text = _MODE.sub("", text_of(msg)[:4000].split(_REMINDER, 1)[0], count=1)
        return msg.get("role") == "user" and (
            _HELP.match(text) is not None
            or (
                not text.startswith(_AIDER_SAYS)
                and not EDIT_FAILED.search(text)
                and not LINT.search(text)
                and not RAN.search(text[:400])
                and not text.lstrip().startswith(("I added these files", "I have *added these files", "Ok,", "/"))
                and not _QUESTION.match(text)  # an answer typed to aider's own question
            )
        )

    def correction(self, text: str) -> str | None:
        return super().correction(_MODE.sub("", text, count=1))

    @staticmethod
    def own_words(text: str) -> str:
        end = _watched(text)
        return text if end is None else text[end:]

    def findings(
        self, reply: Message, after: Sequence[Message], tools: Sequence[Message], before: Sequence[Message] = ()
    ) -> Iterator[Finding]:
        retried = lost = added = False
        # a reply in ask mode: aider applies none of its edit blocks, so none applied says nothing
        asking = bool(before) and text_of(before[-1]).lstrip().startswith("/ask")
        # a reply of nothing with no call reported (aider stopped at a question of its own, or answered a
        # command itself): nothing was answered to correct, and the same request again is sent again
        unanswered = not text_of(reply).strip() and not (after and _RETURNED.search(text_of(after[0])[:20000]))
        # ... and when the request was a command of aider's, the person's next words are not about a reply
        own = False
        if unanswered:
            asked = (text_of(m) for m in reversed(before[-50:]) if m.get("role") == "user")
            own = _OWN_COMMAND.match(next((t for t in asked if not t.startswith(_AIDER_SAYS)), "")) is not None
        for i, msg in enumerate(after):
            if msg.get("role") != "user":
                continue
            text = text_of(msg)[:20000].split(_REMINDER, 1)[0]  # aider's format rules follow what it says
            if question := _HELP.match(text):
                text = question.group(1)
            if undone := _UNDONE.match(text.strip()):
                # the person undid the change (`/undo`; aider then tells the model it reset the commit)
                yield Finding("user_correction", Evidence("aider.undone", i, 1, undone.group(0)))
            if text.startswith(_AIDER_SAYS) and (failed := _CALL_FAILED.search(text)):
                # a call to the model failed: the person sending the same again is a retry, not a correction;
                # and unless aider's own retries got an answer, so is anything else they send
                retried, lost = True, lost or not _ANSWERED.search(text, failed.end())
                if env := first_match(ENVIRONMENT, text):
                    yield Finding("environment", Evidence("aider.environment", i, env[0], env[1]))
            if text.startswith(_AIDER_SAYS) and _ADDED.search(text):
                added = True  # the files the reply asked for were added: asking again is aider's way on
            if text.startswith(_AIDER_SAYS):
                rule, hit = "aider.interrupted", first_match(INTERRUPTED, text)
                if hit is None:
                    rule, hit = "aider.refused", first_match(REFUSED, text)
                if hit is not None and not _failed_before(text, hit[0]):
                    yield Finding("rejected", Evidence(rule, i, hit[0], hit[1]))
            if text.startswith(_AIDER_SAYS) and (placeholder := _placeholder_run(text)):
                yield Finding("task_failure", Evidence("aider.placeholder_run", i, placeholder[0], placeholder[1]))
            if text.startswith(_AIDER_SAYS) and (bad := _misnamed(text)):
                yield Finding("task_failure", Evidence("aider.misnamed_file", i, bad[0], bad[1]))
            if text.startswith(_AIDER_SAYS) and (unable := _UNABLE.search(text)):
                line = text.count("\n", 0, unable.start()) + 1
                if _bad_name(unable.group(1).strip()):
                    yield Finding("task_failure", Evidence("aider.misnamed_file", i, line, unable.group(0)[:160]))
                else:
                    yield Finding("environment", Evidence("aider.unable_to_create", i, line, unable.group(0)[:160]))
            if text.startswith(_AIDER_SAYS) and not text_of(reply).strip() and (empty := first_match(_EMPTY, text)):
                yield Finding("environment", Evidence("aider.empty_response", i, empty[0], empty[1]))
            if text.startswith(_AIDER_SAYS) and (crashed := _crashed(text)):
                yield Finding("environment", Evidence("aider.crashed", i, crashed[0], crashed[1]))
            elif (hit := first_match(EDIT_FAILED, text)) or (
                text.startswith(_AIDER_SAYS) and (hit := first_match(_NOT_APPLIED, text))
            ):
                if "token limit" in hit[1] and "exhausted context window" in text and not text_of(reply).strip():
                    # nothing came back: the request did not fit the model's window (the person's files and
                    # history), a limit of the set-up; an empty reply at the output limit spent it thinking
                    yield Finding("environment", Evidence("aider.context_full", i, hit[0], hit[1]))
                else:
                    yield Finding("task_failure", Evidence("aider.edit_failed", i, hit[0], hit[1]))
            elif text.startswith(_AIDER_SAYS) and (unwritten := _unwritten(text)):
                # the error, not the path the model chose (also after it: `Is a directory: 'x'`), says whether
                # the disk would refuse any model's edit
                line = text.count("\n", 0, unwritten.start()) + 1
                report = unwritten.group(0)[:160]
                if first_match(ENVIRONMENT, unwritten.group(2).split(": ", 1)[0]):
                    yield Finding("environment", Evidence("aider.environment", i, line, report))
                else:
                    yield Finding("task_failure", Evidence("aider.edit_failed", i, line, report))
            elif i == 0 and text.startswith(_AIDER_SAYS) and not asking and _unapplied(text_of(reply), text):
                yield Finding("task_failure", Evidence("aider.not_applied", None, None, "edit blocks, none applied"))
            elif (hit := first_match(LINT, text)) and (linted := _lint(text)):
                yield Finding(linted, Evidence("aider.lint", i, hit[0], hit[1]))
            elif RAN.search(text[:400]) and (err := anchored_error(text)):
                env = first_match(ENVIRONMENT, text[-2000:])
                if env is not None:
                    yield Finding("environment", Evidence("aider.environment", i, env[0], env[1]))
                else:
                    yield Finding("task_failure", Evidence("aider.test_output", i, err[0], err[1]))
            elif self.human(msg) and not lost and not own:
                if (said := self.correction(text)) is not None:
                    yield self.said(text, i, said, text_of(reply))
                elif not added and not retried and not unanswered and _watched(text) is None:
                    # (--watch-files sends its request again whenever the file is saved with the comment in it)
                    yield from self.asked_again(after[i : i + 1], before)
            if not text.startswith(_AIDER_SAYS):
                break  # the person's next message ends what belongs to this reply


def _looks(person: str, reply: str, edited: bool) -> bool:
    """A block that only looks at the repository, or runs a command (no model reply) after the reply before
    changed code, running it: what the person says after it is still about the reply before."""
    return _LOOK.match(person) is not None or (_RAN_CMD.match(person) is not None and not reply and edited)


_REFLECTIONS = re.compile(r"Only \d+ reflections allowed")  # aider giving up its retries, whatever failed


def _crashed(console: str) -> tuple[int, str] | None:
    """(line, error) of aider's own exception applying the reply's edits, when no edit of it failed otherwise
    (an edit block that did not match, then the crash, is still the reply's failure)."""
    if "Exception while updating files:" not in console or (crash := _CRASHED.search(console)) is None:
        return None
    failed = first_match(EDIT_FAILED, console)
    if failed is not None and not _REFLECTIONS.match(failed[1]):
        return None
    return console.count("\n", 0, crash.start()) + 1, crash.group(0).replace("\n", " ")[:160]


# A shell command of the reply's that aider ran (the person said yes) with a placeholder left in it for the
# person to fill (`git revert <commit-hash>`): the shell reads `<commit-hash` as a file to read from, and the
# command never does what it names. (Quoted text is the command's own: `echo "<div>"`.)
_RUNNING = re.compile(r"^Running (.+)$", re.M)
_PLACEHOLDER = re.compile(r"(?<![<\w])<[A-Za-z][\w./@:-]*(?: [\w./@:-]+)*>(?=\s|$|[;&|])")


def _placeholder_run(console: str) -> tuple[int, str] | None:
    """(line, the command) of a command aider ran with a placeholder in it."""
    if "Running " not in console:
        return None
    for ran in _RUNNING.finditer(console):
        if _PLACEHOLDER.search(quoted_away(ran.group(1))):
            return console.count("\n", 0, ran.start()) + 1, ran.group(0)[:160]
    return None


def _failed_before(console: str, line: int) -> bool:
    """aider reported the reply's edits failed (their format, or its lint of them), or failed to apply them
    itself, before `line`: a Ctrl-C or a "no" there stops aider's own retry of the failed edit, not the reply."""
    failed = first_match(EDIT_FAILED, console) or _crashed(console)
    if failed is None and (linted := first_match(LINT, console)) is not None and _lint(console) == "task_failure":
        failed = linted
    if failed is None or failed[0] >= line:
        return False
    # (a retry applied in between: the refusal is of what came after it)
    lines = console.splitlines()[failed[0] : line - 1]
    return not any(x.startswith("Applied edit to") for x in lines)


def _stopped(person: str, returned: bool) -> bool:
    """Ctrl-C before any reply to a request (a few words at least, not a stray `exit` or a command) whose
    call had neither failed nor come back (with nothing, or at a limit): the reply had not begun (a reasoning
    model still thinking) and the person stopped it."""
    return len(person.split()) >= 4 and not person.lstrip().startswith("/") and not returned


def _unapplied(reply: str, console: str) -> bool:
    """The reply wrote edit blocks and aider's console (a chat history's `> ` lines: aider sends the
    model no such report) shows none applied and says nothing of them: blocks in a shape aider does not
    take are passed over in silence. (Not when aider asked to add the files they edit, a call failed,
    or the person was asked about them: each of those is read on its own.)"""
    return (
        _BLOCK_END.search(reply) is not None
        and APPLIED.search(console) is None
        and "Did not apply edit to" not in console  # --dry-run
        and "? (Y)es/(N)o" not in console  # (not `_QUESTION.search`: from each place in a line to its end)
        and _CALL_FAILED.search(console) is None
    )


def _misnamed(text: str) -> tuple[int, str] | None:
    for m in APPLIED.finditer(text):
        if _bad_name(m.group(1).strip()):
            return text.count("\n", 0, m.start()) + 1, m.group(0)[:160]
    return None


def _bad_name(name: str) -> bool:
    """A file name the reply cannot have meant: a line of prose, a tag, a bare word of no file kind."""
    base = name.rsplit("/", 1)[-1]
    return bool(
        re.search(r"\s", name)
        or not re.match(r"[\w./~]", name)
        or ("." not in base and "/" not in name and base.lower() not in _NAMELESS)
        or name.startswith("path/to/")  # the example path of aider's own instructions, copied
    )


READER = Aider()

_STARTED = "# aider chat started at"


# The person running a command (`/run`, `!`, `/test`) whose output aider adds to the chat: `/run` when they
# say yes, `/test` when it fails (aider then asks the model to fix it). aider sends it as the person's message
# in its own words (its prompt `run_output`); the history shows only the command and the output. Since 2024
# aider calls no model for `/run` (earlier versions did: there the block holds a reply).
_RAN_CMD = re.compile(r"\A\s*(?:/run\b|/test\b|!)[^\S\n]*")
_ADD_OUTPUT = re.compile(
    r"^Add (?:the output|command output|[\d.]+k tokens of command output) to the chat\?(.*)$", re.I
)
# the answers it offers, the typed answer after them (`[Yes]: y`, `[Y/n/instructions] n`), or on the line
# after it (`(Y)es/(n)o/message with instructions: fix it`); nothing is the default, yes; other words are
# instructions sent with the output; `d` is no where the prompt offers "(D)on't ask again" (2025)
_OPTIONS = re.compile(
    r"\s*(?:\(Y\)es/\(N\)o(?:/\(D\)on't ask again)? \[Yes\]:|\(Y\)es/\(n\)o/message with instructions:|"
    r"\(y/n/instructions\)|\[Y/n/instructions\]|\[Y/n\]|\(Y/n\))",
    re.I,
)


def _declined(options: str) -> bool:
    """Whether the answer after a prompt's question mark (its options, then what was typed) is no."""
    m = _OPTIONS.match(options)
    typed = options[m.end() if m else 0 :].strip().lower()
    return typed in ("n", "no") or (typed == "d" and "(D)on't ask again" in options)


_ADDED_LINES = re.compile(r"\s*Added \d+ lines? of output to the chat\.?\s*$")


def _output_end(rest: Sequence[str]) -> int:
    """How many of a command's block's lines (the person's taken out) are its output. aider quotes each
    write with `> ` before its first line only and ends it with a markdown line break (two spaces): a write
    of several lines ends at its last line break before aider's next quoted line, whatever its lines begin
    or end with (pytest's own `>`, a diff of markdown); with no quoted line after it, at the first line
    break that no more of it follows. In a history stripped of trailing spaces: the lines right after a
    quoted one, up to the next quoted one. The output ends at text after an empty line (the reply)."""
    breaks = any(_broken(x) for x in rest)
    i, end, n = 0, 0, len(rest)
    quoted = 0  # aider's next quoted line after i (found once for all the writes before it: linear)
    while i < n and not rest[i].strip():
        i += 1
    while i < n and _console(rest[i]):
        if breaks and not _broken(rest[i]):  # a write of several lines
            if quoted <= i:
                quoted = next((j for j in range(i + 1, n) if _console(rest[j]) and _broken(rest[j])), n)
            if quoted < n:
                last = next((j for j in range(quoted - 1, i, -1) if _broken(rest[j])), None)
            else:
                last = next((j for j in range(i + 1, n) if _broken(rest[j]) and _ends(rest, j)), None)
            if last is None:
                return end  # a write never ended: its lines may be the reply, as read before
            i = last + 1
        else:
            i += 1
            if not breaks and i < n and rest[i].strip() and not _console(rest[i]):  # a write's lines after its first
                while i < n and not _console(rest[i]):
                    i += 1
                if i == n:
                    return end
        end = i
        while i < n and not rest[i].strip():
            i += 1
    return end


def _ends(rest: Sequence[str], j: int) -> bool:
    """Whether nothing more of a write follows line j: the end, an empty line, or a quoted one."""
    return j + 1 == len(rest) or not rest[j + 1].strip() or _console(rest[j + 1])


def _broken(line: str) -> bool:
    """A line that ends a write of aider's: a markdown line break after its text (an output's own line of
    spaces, a blank line of pytest's listing of code, is not one)."""
    return line.endswith("  ") and (line == "  " or not line.isspace())


def _parts(block: Sequence[tuple[str, bool]]) -> tuple[str, list[str]]:
    """A block's person's text, and the lines after it up to a new aider session (nothing after it belongs
    to this block)."""
    rest = [x for x, theirs in block if not theirs]
    ended = next((i for i, x in enumerate(rest) if x.startswith(_STARTED)), len(rest))
    return "\n".join(x[5:] for x, theirs in block if theirs), rest[:ended]


def _sent(block: Sequence[tuple[str, bool]]) -> str | None:
    """The person's message aider made of a command they ran in this block and its output (None: it made
    none, or the history does not say it did)."""
    person, rest = _parts(block)
    if not (ran := _RAN_CMD.match(person := person.strip())):
        return None
    end = _output_end(rest)
    shown = [x[2:] if _console(x) else x for x in rest[:end]]
    output: list[str] = []
    prompted = declined = expect = False
    for x in shown:
        if expect:  # the prompt's answers on their own line, and what was typed
            expect = False
            if x.lstrip().startswith(("(Y)es", "[Y", "(y")):
                declined = _declined(x)
                continue
        if (prompt := _ADD_OUTPUT.match(x.strip())) is not None:
            prompted, declined = True, _declined(prompt.group(1))
            expect = not prompt.group(1).strip()
        elif not _ADDED_LINES.match(x):
            output.append(x.rstrip())  # (aider's markdown line break is not the output's)
    replied = any(x.strip() and not _console(x) for x in rest[end:])
    if declined or not (prompted or (person.startswith("/test") and replied)):
        return None  # declined; or a /run the history does not say was sent (a failed /test is, and answered)
    text = "\n".join(output).strip()
    if not text:  # aider since 2025 logs only that it added the output (`Added 6 lines of output to the chat.`)
        return None
    return f"I ran this command:\n\n{person[ran.end() :]}\n\nAnd got this output:\n\n{text}\n"


def _console(line: str) -> bool:
    """aider's own output: `> ` and the text (`>` alone when trailing spaces were stripped); a reply's
    `>>>>>>> REPLACE` is the reply's."""
    return line.startswith("> ") or line == ">"


def _persons(lines: Sequence[str]) -> list[bool]:
    """Which lines are the person's. aider writes each line a person typed as `#### ` + the line + two
    spaces (a markdown line break); a reply's own `#### ` heading has no such spaces. Histories of older
    aider versions (or stripped of trailing spaces) have none anywhere in a session: there every `#### `
    line is taken as the person's, as a reply's headings cannot be told apart. A session whose only such
    lines are empty ones (`####   `, a blank line of a prompt) is one of those: its other lines lost theirs."""
    out = [line.startswith("#### ") for line in lines]
    start = 0
    for end in [*(i for i, line in enumerate(lines) if line.startswith(_STARTED)), len(lines)]:
        if any(out[i] and lines[i].endswith("  ") and lines[i][5:].strip() for i in range(start, end)):
            for i in range(start, end):
                out[i] = out[i] and lines[i].endswith("  ")
        start = end
    return out


def transcript(data: bytes, locator: Mapping[str, Any]) -> Transcript:
    """(reply, after, tools) for the reply to the person's k-th message (`#### ` lines) in a chat history."""
    k = int(locator["user_block"])
    lines = data.decode("utf-8", "replace").splitlines()
    mine = _persons(lines)
    # each block: one run of the person's lines and everything up to the next run, as (line, the person's)
    blocks: list[list[tuple[str, bool]]] = []
    person_before = False
    for line, person in zip(lines, mine, strict=True):
        if person and not person_before:
            blocks.append([])
        if blocks:
            blocks[-1].append((line, person))
        person_before = person
    if not 1 <= k <= len(blocks):
        raise LookupError(f"no user block {k} (the history has {len(blocks)})")

    def split(block: list[tuple[str, bool]], asking: bool = False) -> tuple[str, str, str]:
        """(the person's text, the reply, aider's own '> ' output). Ctrl-C *before* reply text is a
        reply cut off while it streamed; after it, the person left."""
        person, rest = _parts(block)
        if _RAN_CMD.match(person):  # the command's output, however aider wrote it, is not a reply
            shown = _output_end(rest)
            rest = [f"> {x}" if i < shown and not _console(x) else x for i, x in enumerate(rest)]
        text_at = [i for i, x in enumerate(rest) if x.strip() and not _console(x)]
        reply = "\n".join(x for x in rest if not _console(x))
        edits = not asking and _EDITS.search(reply) is not None  # (in ask mode aider applies none)
        said: list[str] = []
        pending = ""  # the last of `said` that is not empty
        returned = False  # the call failed or came back (kept as lines come: a scan per Ctrl-C is quadratic)
        for i, x in enumerate(rest):
            if _console(x):
                line = x[1:].strip()
                if (
                    INTERRUPTED.search(line)
                    and not (text_at and i < text_at[-1])
                    and not (edits and _ASKED.match(pending))
                    and not (not text_at and _stopped(person, returned))
                ):
                    continue  # after the whole reply: the person quit, nothing was refused
                said.append(line)
                pending = line or pending
                returned = returned or bool(_CALL_FAILED.match(line) or _RETURNED.match(line))
        return person, reply.strip(), "\n".join(said)

    before = blocks[: k - 1]
    typed = _parts(blocks[k - 1])[0].lstrip()
    # `/ask X` is logged, and then X as a block of its own: the message aider sent in ask mode, for X only
    prior = _parts(blocks[k - 2])[0].strip() if k >= 2 else ""
    once = prior.startswith("/ask") and (m := _MODE.match(prior)) is not None and prior[m.end() :] == typed.strip()
    ask = typed.startswith("/ask") or once or (not typed.startswith("/") and _asking(before))
    asked, answer, console = split(blocks[k - 1], ask)
    own = (
        _OWN.match(asked)
        or (asked.lstrip().startswith("/") and "Invalid command" in console)
        # `/run` with no reply; a chat mode's command with no reply: aider logs the message it sends as the next block
        or ((_RAN_CMD.match(asked) or _MODE.match(asked)) and not answer)
    )
    # what aider printed after the reply, even nothing (it prints every edit it applies; a request to the
    # model carries no such report); after its own command, no reply of the model's: nothing to judge
    mute = own and not answer  # (an older history may log a reply in a command's block: then it is read)
    after: list[Message] = [{"role": "user", "content": _AIDER_SAYS if mute else f"{_AIDER_SAYS}\n{console}".rstrip()}]
    # The person's next message the model sees: aider answers a look at the repository (`/map`, `/ls`)
    # itself, so what the person says after it is about the last reply. A look has no reply to judge.
    nxt = k
    edited = APPLIED.search(console) is not None
    # (a command's output says something of the reply only when the reply changed code: aider sends it all the same)
    sent = None
    while nxt < len(blocks) and not (sent := _sent(blocks[nxt]) if edited else None):
        if not _looks(*split(blocks[nxt])[:2], edited):
            break
        if any(x.startswith(_STARTED) for x, _ in blocks[nxt]):
            nxt = len(blocks)  # a new aider session began: nothing after it answers this reply
            break
        nxt += 1
    said_next = (sent or split(blocks[nxt])[0]) if nxt < len(blocks) else ""
    # `/help QUESTION` is followed in the history by the request aider made of it (the question and its
    # documentation): the same request, not what the person said next; architect mode hands its answer to
    # its editor model as the next message (logged as the person's): the editor's request, not the person's
    if nxt < len(blocks) and not own and not _HELP.match(said_next) and not _handed(said_next, answer):
        after.append({"role": "user", "content": said_next})
    # the person's message the reply answers comes before it, as it does in aider's requests
    if ask and not typed.startswith("/"):
        asked = f"/ask {asked}"  # in ask mode (a bare `/ask` earlier): the request as aider takes it
    messages: list[Message] = [{"role": "user", "content": asked}, {"role": "assistant", "content": answer}, *after]
    return Transcript("openai", messages, 1, [])


def _handed(message: str, reply: str) -> bool:
    """The next message is the reply itself (its reasoning left out): architect mode's request to its editor."""
    # (a plan's own `> ` lines are taken out of the reply as aider's: out of the message too)
    said = " ".join(" ".join(x for x in message.splitlines() if not _console(x)).split())
    return len(said) >= 40 and " ".join(reply.split()).endswith(said)


# A bare command that switches aider's chat mode for the messages after it (`/ask`, `/chat-mode code`)
_SWITCH = re.compile(r"^[^\S\n]*/(?:chat-mode[^\S\n]+([\w-]+)|(ask|code|architect|context))[^\S\n]*$", re.M)


def _asking(blocks: Sequence[list[tuple[str, bool]]]) -> bool:
    """aider is in ask mode after these blocks: the last switch since its session started was `/ask`."""
    mode = "code"
    for block in blocks:
        said = "\n".join(line[5:] for line, person in block if person)  # (`#### ` off; a run may hold several)
        for switch in _SWITCH.finditer(said):
            mode = switch[1] or switch[2]
        if any(line.startswith(_STARTED) for line, _ in block):
            mode = "code"  # a new session starts in its default mode
    return mode == "ask"
