"""How people say the last step did not work, beyond the English the readers start from.

Anchored at the start of a person's message (their first words), never anywhere in it: "no funciona",
"还是报错", "immer noch", "the page is still blank". A lexicon per language of saying it does not work,
it still fails, it is wrong, the same error; and the shapes of an error a person pastes from a browser
console, a compiler or a server log at the top of their message.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["ENDS", "MEANT", "PASTED_MORE", "SAID", "STILL", "Gated"]


class Gated(NamedTuple):
    """A pattern behind words (lowercase) that every match of it contains: an alternation of dozens is
    tried at every position of a text (~270 µs on 1,500 characters; 5-30 µs on a person's sentence), the
    substring tests cost a few. A new alternative needs its word here: a property test draws matches and
    checks that the words hide none."""

    pattern: re.Pattern[str]
    words: tuple[str, ...]

    def _may(self, text: str) -> bool:
        # (`map` of the bound test, not a generator: no Python frame for each of dozens of words)
        if any(map(text.lower().__contains__, self.words)):
            return True
        # re.I without re.A matches "ſ" for "s" and "ı" or "İ" for "i", which no lowercased word holds
        return self.pattern.flags & (re.I | re.A) == re.I and not text.isascii()

    def search(self, text: str) -> re.Match[str] | None:
        return self.pattern.search(text) if self._may(text) else None

    def match(self, text: str) -> re.Match[str] | None:
        return self.pattern.match(text) if self._may(text) else None


# Said at the start of the message, in the languages agents' users write in most.
SAID = re.compile(
    r"^[\W\d_]*(?:"
    # Spanish
    r"(?:todav[ií]a |a[uú]n |sigue )?no (?:funciona|anda|sirve|compila|carga|cambi[oó]|se (?:ve|muestra|guarda))|"
    r"sigue (?:sin|fallando|dando|igual|apareciendo|saliendo|mal|el mismo|la misma)|el (?:mismo )?error (?:es|sigue)|"
    r"(?:me )?(?:da|sale|aparece|tira) (?:un |el |este |otro )?error|est[aá] mal\b|eso no es|"
    # Portuguese
    r"(?:ainda )?n[aã]o (?:funciona|funcionou|carrega|compila|mudou)|ainda (?:est[aá]|d[aá]|continua|n[aã]o)|"
    r"continua (?:dando|com|o mesmo|a mesma|igual|sem)|deu (?:erro|errado)|est[aá] errado|"
    # French
    r"(?:[cç]a |il |elle )?ne (?:marche|fonctionne|compile|s'affiche|charge) (?:pas|toujours pas|plus)|"
    r"(?:c'est |il y a )?toujours (?:pas|la m[eê]me|le m[eê]me|une erreur|des erreurs|rien|vide|cass[ée])|"
    r"(?:j'ai |il y a )(?:une |encore une |toujours une )?erreur|c'est (?:faux|cass[ée])|[cç]a plante|"
    # German
    r"(?:es |das )?(?:funktioniert|geht|klappt|l[aä]uft) (?:immer noch |noch immer |leider |jetzt |trotzdem )?"
    r"(?:nicht|nichts)|immer noch|(?:der |die |das )?(?:gleiche|selbe|gleicher|selber) fehler|"
    r"(?:ich bekomme |es kommt )(?:einen |ein |den |immer noch einen )?fehler|das ist falsch|"
    # Italian
    r"(?:ancora )?non (?:funziona|va|compila|carica)|ancora (?:lo stesso|la stessa|errore)|[eè] sbagliato|"
    r"(?:c'[eè]|ho) (?:un |ancora un )?errore|"
    # Russian
    r"(?:вс[её] ещ[её] |до сих пор |опять |снова |по-прежнему )?не (?:работает|работают|запускается|"
    r"компилируется|собирается|получается|сработало|помогло|изменилось|открывается|грузится|отображается)|"
    r"вс[её] ещ[её]|до сих пор|опять (?:ошибка|то же|та же|не)|снова (?:ошибка|то же|та же|не)|ошибка|"
    r"не то\b|неправильно|та же (?:ошибка|проблема)|то же самое|"
    # Chinese
    r"还是(?:不|没|报错|一样|有|出|错|失败|老样子)|你还没|依然|仍然|不行|不对|没用|没有用|报错|出错|错误[:：]|有错误|失败了|"
    r"没有(?:效果|变化|反应|生效)|不生效|无效|有问题|不能用|用不了|跑不起来|[^\n。.!?]{0,16}?(?:失效|丢失)了|"
    # Japanese
    r"まだ(?:動|エラー|直|同じ|表示され)|動かない|動きません|エラー(?:が|に|です|になります)|直って(?:い)?ない|"
    r"うまく(?:いかない|いきません|動かない)|違います|変わらない|変わりません|"
    # Korean
    r"여전히|아직도|(?:작동|동작)(?:하지 ?않|이 ?안)|안 ?(?:돼|됩니다|되네|됨)|(?:오류|에러)(?:가|가 나|남|발생)|"
    r"틀렸|같은 (?:오류|에러|문제)|"
    # Turkish
    r"(?:l[üu]tfen )?hatalar[ıi]? (?:d[üu]zelt|g[öo]rd[üu]n|devam|hala|var)|"
    r"hala (?:[çc]al[ıi][şs]m[ıi]yor|hata|ayn[ıi]|olmuyor)|"
    r"(?:uygulama )?(?:[çc]al[ıi][şs]m[ıi]yor|[çc][öo]kt[üu]|olmad[ıi])|ayn[ıi] hata|hata (?:al[ıi]yorum|veriyor)|"
    # Czech, Dutch, Polish, Vietnamese, Indonesian
    r"(?:furt|po[řr][áa]d|st[áa]le|zase) (?:nic|ne|nefunguje|stejn)|nefunguje|nejde to|"
    # (the same problem said alone, not "the same problem is on /login too"; "it would not help" is a question)
    r"stejn[ýáéy] (?:probl[ée]m|chyba)(?=\s*(?:[,.!]|$))|"
    r"(?:(?:to|[úu]prava|oprava|zm[ěe]na) )?nepomohl[aoiy]?\b(?! by)|"
    r"(?:het )?werkt (?:nog steeds |nog )?niet|nog steeds|(?:nadal |wci[aąż]+ )?nie dzia[lł]a|"
    r"v[aẫ]n (?:kh[oô]ng|h[oô]ng|ko|l[oỗ]i|b[iị])|kh[oô]ng (?:ch[aạ]y|ho[aạ]t [đd][oộ]ng)|"
    r"(?:ko|kh[oô]ng|h[oô]ng) (?:c[oó] )?[đd][uư][oợ]c\b|"
    r"masih (?:error|gagal|tidak|belum)|tidak (?:berfungsi|jalan)|"
    # "I told you", "I asked you", in the languages above: the reply did not do what was said (not an answer
    # given again, "te dije que sí"; not thanks after it)
    r"(?:pero |mais |aber |mas |но )?(?:(?:ya |como )?te (?:pregunt[eé]|dije|ped[ií])(?! que s[ií]\b)|"
    r"je (?:t|vous)['’] ?ai (?:d[ée]j[aà] )?(?:dit|demand[ée])|je te l['’]ai (?:d[ée]j[aà] )?dit|"
    r"j['’]ai (?:d[ée]j[aà] )?dit (?:pas|non|de ne|que non)|"
    r"(?:ich (?:habe|hab|hatte)(?:['’]s)?|hab(?:e)? ich)(?: es)?(?: (?:dir|doch|schon|bereits|ja))+ (?:gesagt|gefragt)|"
    r"(?:eu )?(?:j[aá] )?te (?:disse|pedi|falei)|eu falei (?:pra|para) (?:n[aã]o|voc[eê])|"
    r"я (?:же |ведь )(?:сказал|говорил|просил|спросил)|я (?:тебе|вам) (?:же )?(?:сказал|говорил)|"
    r"我(?:已经|刚才|不是)?说(?:了|过)(?!的)|(?:tôi|mình|em) (?:đã )?(?:nói|bảo) (?:rồi|là|bạn|em|anh|mà)\b)"
    r"(?![^.!?\n]*(?:gracias|perfect|merci|parfait|danke|perfekt|obrigad|спасибо|отлично|谢谢|cảm ơn))|"
    # asking for the errors its change left to be fixed, in the languages above
    r"(?:please |pls )?fix (?:the|these|this|those|all(?: the)?) (?:errors?|bugs?|issues?)\b|"
    r"corrige (?:los|el|estos|este) (?:errores|error)|corrige (?:les|l'|cette|ces) ?erreurs?|behebe (?:den|die) fehler|"
    r"исправь (?:эту |эти )?ошибк|修复(?:一下)?(?:这个|这些)?(?:错误|报错|问题)"
    r")",
    re.I,
)

# "X is still <not right>" in the first sentence: the state the person expected to change did not.
STILL = Gated(
    re.compile(
        r"^[^.!?\n]{0,80}?\b(?:is|are|was|were|it'?s|they'?re)\s+still\b|^\W*i(?:'m| am)? still (?:see|get|have)\w*\b|"
        r"^\W*still\s+(?!,)(?:\w+\s+){0,3}?(?:lost|missing|empty|blank|there|shows?|showing|happen\w*|appear\w*|"
        r"wrong|broken|the same|not|no|(?:is|are|was|were)n'?t|fail\w*|crash\w*|hang\w*|stuck|"
        r"null|undefined|zero|same|seeing|see|getting|get)\b|"
        # with its subject first, only what says it is still wrong ("it still shows the right total" is news)
        r"^\W*(?:it|this|that|they|(?:the|my|your) \w+)\s+still\s+(?:appears?|happens|fails?|crash\w*|hangs|breaks|"
        r"doesn'?t|does not|isn'?t|is not|won'?t|can'?t|shows? (?:the old|the same|up|an? error|nothing|blank)|"
        r"(?:is|are) (?:there|broken|wrong|empty|blank|missing|the same)|has the same|only (?:works?|shows?|loads?))\b|"
        # said as all of it ("It still does.") or of the error itself ("error still is there")
        r"^\W*(?:it|this|that|they)\s+still\s+(?:does|do|is|are|happens)[\s.!]*$|"
        r"^\W*(?:(?:the|that|this|my) )?(?:error|bug|issue|problem|warning)s?\s+(?:is |are )?still\s+(?:is |are )?"
        r"(?:there|here|present|showing|happening)\b|"
        r"^[^.!?\n]{0,60}?\bnot (?:fixed|solved|resolved|working|saved|persisted|updated|showing|loading)\b|"
        r"^[^.!?\n]{0,100}?\bstill (?:need|needs) to be (?:fixed|addressed|resolved|corrected)\b|"
        r"^\W*(?:it|this|that|your (?:fix|change))\s+(?:didn'?t|did not|doesn'?t|does not|won'?t)\s+"
        r"(?:fix|solve|resolve|help|do anything|change anything)",
        re.I,
    ),
    ("still", "not", "n't", "didnt", "doesnt", "wont"),  # (one is in every match)
)

# "What I meant was ..." in the first sentence, in languages that say it at its end ("...하자는 소리였어").
MEANT = re.compile(r"^[^.!?\n]{0,160}?(?:我的意思是|(?:는|란) ?(?:소리|말|뜻|얘기)(?:였|이었))")

# "It does not work" at the end of the first sentence, in languages whose verb comes last: "백엔드 서버가
# 실행되지 않아", "migrate가 안됨", "背景がうまく動作していないです" (SAID reads their starts only). Not asked
# ("안 돼?" ends in a question mark), nor of the error itself ("이제 에러가 표시되지 않아요": good news).
ENDS = re.compile(
    r"^(?![^\n]*(?:에러|오류|문제|버그|경고|エラー|問題|警告))[^\n]*?"
    r"(?:안 ?(?:돼|됨|됩니다|되네|되요|돼요|되는데)|(?:되|하)지 ?않(?:아|아요|습니다|네|음|는데|는다)|"
    r"안 ?(?:떠|뜨네|뜸|떠요|나와|나옴|나오네|보여|보임|보이네|보이는데)|수 ?없(?:어|네|음|는데|습니다|는 ?거 ?같아)|"
    r"(?:動作|表示|反映)(?:していない|しない|しません|していません|されない|されません)(?:です)?)[.!~ㅠㅜ。！\s]*$"
)

# The shapes of errors people paste at the top of a message (browsers, compilers, servers, runtimes).
PASTED_MORE = re.compile(
    r"^[^\S\n]*(?:Exception in thread|panic: |\[ERROR\]|(?:\S+\(\d+,\d+\): )?error TS\d+|Unhandled (?:Runtime )?Error|"
    r"Failed to (?:load|fetch|resolve|execute)|\S+ \d{3} \((?:Internal Server Error|Not Found|Bad Request|"
    r"Unauthorized|Forbidden|Bad Gateway|Service Unavailable)\)|(?:GET|POST|PUT|DELETE|PATCH) \S+ [45]\d\d\b|"
    r"Uncaught \(in promise\)|Hydration failed|"
    # a browser refusing a request across origins (Chrome's, after the console's `file:line` of it; Firefox's)
    r"(?:\S+:\d+\s+)?Access to \w+ at '[^'\n]*'(?: \(redirected from '[^'\n]*'\))? from origin '[^'\n]*' "
    r"has been blocked by CORS|Cross-Origin Request Blocked: |"
    # a shell or a core tool reporting what it could not do, as a terminal shows it
    r"(?:(?:/usr)?(?:/bin/)?(?:bash|zsh|sh)(?:: line \d+)?|sudo|cp|mv|rm|mkdir|ln|chmod|chown|tar|cd): "
    r".{0,200}?(?:cannot |missing |invalid |unrecognized |No such file|Permission denied|Not a directory|"
    r"Is a directory|command not found|password is required))",
    re.M,
)


_TOKEN = re.compile(r"\w+")


def restated(asked: str, now: str) -> bool:
    """The person asking again what they asked before the reply (the same words, or the same with
    more said): the reply did not do it. Short messages ("continue", "yes") repeat without meaning that.
    A restatement starts the way the request did, so their first words are compared before the rest."""
    a0, b0 = asked.lstrip()[:24].lower(), now.lstrip()[:24].lower()
    if a0[:12] != b0[:12] or len(asked.split(None, 1)) < 2:  # a path or a name alone is no request said again
        return False
    if not _alike(asked[:600], now[:600]):
        return False
    # a request longer than that may be a template the person fills in at its end each time: a
    # restatement keeps the end too
    return len(asked) <= 600 or _alike(asked[-600:], now[-600:])


def _alike(asked: str, now: str) -> bool:
    a, b = _TOKEN.findall(asked.lower()), _TOKEN.findall(now.lower())
    if len(a) < 5 or len(b) < 5:
        return False
    if b[: len(a)] == a or a[: len(b)] == b:
        return True
    sa, sb = set(a), set(b)
    return len(sa & sb) >= 0.8 * len(sa | sb)
