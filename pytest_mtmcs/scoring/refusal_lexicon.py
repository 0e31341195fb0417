"""Phrase tables of the refusal detector: compiled patterns, no decisions.

`refusal.py` decides; this module says what a decline looks like, in English, French, German,
Spanish, Portuguese, Italian, Russian, Chinese, Japanese and Korean, and how a reply is normalised
before any pattern runs (lower-cased, markdown and tables flattened, quoted speech removed).
`refusal_clauses.py` holds what may follow a decline: alternatives, pivots, help, hand-offs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple


class Rule(NamedTuple):
    """A pattern and substrings at least one of which every match contains.

    Python's `re` tries each branch of an alternation at every position; a substring test is a
    C loop, so checking `needs` first skips most patterns on most replies (speed, not meaning).
    """

    rx: re.Pattern[str]
    needs: tuple[str, ...]
    non_ascii: bool
    """Every need is non-ASCII (Chinese, Japanese, Russian), so ASCII replies skip the rule."""

    def finditer(self, s: str, start: int = 0, end: int | None = None) -> Iterator[re.Match[str]]:
        """`rx.finditer` over s[start:end], skipped when no needed substring occurs in s."""
        if self.non_ascii and s.isascii():
            return
        if any(n in s for n in self.needs):
            yield from self.rx.finditer(s, start, len(s) if end is None else end)

    def search(self, s: str, start: int = 0, end: int | None = None) -> re.Match[str] | None:
        """The first match in s[start:end], or None."""
        return next(self.finditer(s, start, end), None)


def rule(pattern: str, *needs: str) -> Rule:
    """A `Rule` for `pattern`; `needs` are substrings every match contains."""
    return Rule(re.compile(pattern), needs, not any(n.isascii() for n in needs))


# --- normalisation -----------------------------------------------------------------------------
PUNCT = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"',
                        "\u201e": '"', "\u00ab": '"', "\u00bb": '"', "\u300c": '"', "\u300d": '"',
                        "\u300e": '"', "\u300f": '"', "\u00a0": " "})
BULLET = re.compile(r"^[ \t]*[*\u2022+][ \t]+", re.MULTILINE)
MARKDOWN = re.compile(r"[*_`#~]+|^[ \t]*>+", re.MULTILINE)
# Reported speech: "..." anywhere; '...' only when it opens after a space/colon and closes before
# punctuation, so the apostrophes of "can't" never delimit a quote.
DOUBLE_QUOTED = re.compile(r'"[^"\n]{0,400}"')
SINGLE_QUOTED = re.compile(r"'(?<![^\s:,(]')[^\n]{0,300}?'(?=[\s.,;:!?)]|$)")
SPACES = re.compile(r"[ \t]+")
# A run of stops followed by a space, a closing quote or the end; CJK stops and newlines end anyway.
SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f\n]+(?=[\s\"')\]]|$|(?<=[\u3002\uff01\uff1f\n]))")

# --- rule 1: declines ---------------------------------------------------------------------------
# Verbs a model declines with. Intensifiers and perception verbs (stress, wait, believe, see,
# recommend) are deliberately absent: "I can't recommend it highly enough" is praise.
VERB = (r"(?P<verb>help(?:ing)?|assist\w*|aid|provid\w*|giv(?:e|ing)|offer\w*|shar(?:e|ing)|suppl\w*"
         r"|explain\w*|describ\w*|detail\w*|outlin\w*|teach\w*|show(?:ing)?|guid(?:e|ing)"
         r"|tell\s+(?:you|anyone|someone)\s+(?:how\s+(?:to|much\s+(?:it|of|to|would|you)|many\s+(?:of|to"
         r"|it|would|you))"
         r"|where|which|what\s+to|the\s+way|this|that)"
         r"|walk(?:ing)?\s+(?:you\s+)?through|writ(?:e|ing)|creat\w*|generat\w*|produc\w*|do\b|doing"
         r"|comply\w*|fulfil\w*|engag\w*|participat\w*|take\s+part|support\w*|facilitat\w*|condon\w*"
         r"|encourag\w*|answer\w*|respond\w*|contribut\w*|advis\w*|continu\w*|proceed\w*|attempt\w*"
         r"|instruct\w*|enabl\w*|spell(?:ing)?\s+out|lay(?:ing)?\s+out|break(?:ing)?\s+(?:it\s+)?down"
         r"|map(?:ping)?\s+out"
         r"|cover\w*|address\w*|handl\w*|tackl\w*|entertain\w*|look(?:ing)?\s+into|dig(?:ging)?\s+into"
         r"|put(?:ting)?\s+together"
         r"|draft\w*|compos\w*|disclos\w*|reveal\w*|point(?:ing)?\s+you|direct(?:ing)?\s+you|get\s+behind"
         r"|sign(?:ing)?\s+off"
         r"|promot\w*|work(?:ing)?\s+on|be\s+(?:involved|complicit)|involv\w*"
         r"|(?P<defl>go(?:ing)?\s+(?:into|there)|get(?:ting)?\s+into|discuss\w*|talk(?:ing)?\s+about"
         r"|weigh(?:ing)?\s+in|comment\w*|speculat\w*|touch(?:ing)?|say(?=\s*[.,!;]|$|\s+anything)))")
# Words between the negation and the verb. Each token must parse one way only ("really" is
# `[a-z]+ly`, so it is not listed again): overlapping branches backtrack exponentially.
FILLER = (r"(?:\s+(?:able\s+to|willing\s+to|going\s+to|gonna|comfortable(?:\s+with)?|permitted\s+to"
           r"|allowed\s+to|in\s+a\s+position\s+to|prepared\s+to|to|be|of|feel\s+(?:comfortable|right"
           r"|ok|okay)(?:\s+with)?|think\s+(?:i|we)\s+(?:should|can|could)|want\s+to|like\s+to"
           r"|and\s+(?:won'?t|will\s+not|can'?t|cannot)|[a-z]+ly|just|even|still|also"
           r"|in\s+good\s+conscience))*")
NEG_TRIGGERS = ("not", "n't", "cant", "wont", "dont", "unable", "unwilling")
DECLINES = (
    rule(r"\b(?:i|we)(?:\s+(?:also|just|really|simply|honestly|still))?(?P<neg>\s+(?:can'?t|cannot"
         r"|can\s+not|won'?t|will\s+not|shouldn'?t|should\s+not"
          r"|must\s+not|don'?t|do\s+not|am\s+not|are\s+not|am\s+unable|are\s+unable|am\s+unwilling"
          r"|had\s+better\s+not|would\s+rather\s+not|(?:would\s+)?prefer\s+not"
          r"|(?:would|could)(?:n'?t|\s+not)\s+(?:feel|be)\s+(?:comfortable|right|able))"
          r"|'?(?:m|re)\s+(?:not|unable|unwilling)|'d\s+(?:rather|better|prefer)\s+not|'ll\s+not)"
          + FILLER + r"\s+" + VERB, *NEG_TRIGGERS),
    # "(That's) not something I can help with", "Not a question I'll get into".
    rule(r"\b(?:not|\w+n't)\s+(?:really\s+|quite\s+)?(?:something|a\s+(?:topic|question|subject|request"
          r"|thing)|one)\s+(?:that\s+)?(?:i|we)(?:'m|'d|'ll|\s+am|\s+would|\s+will|\s+can|\s+could)?"
          + FILLER + r"\s+" + VERB, "something", "topic", "question", "subject", "request", "thing", "one"),
    rule(r"\b(?:not|\w+n't)\s+(?:think\s+(?:it's|it\s+is|that's)\s+)?(?:be\s+)?(?:appropriate|responsible"
          r"|ethical|right|safe|okay|ok|wise|a\s+good\s+idea|my\s+place)\s+for me to\s+(?:\w+\s+)?"
          + VERB + r"|\b(?:inappropriate|irresponsible|unethical|wrong)\s+(?:of|for) me to\b", "me to"),
    rule(r"\bagainst\s+(?:my|our)\s+(?:guidelines|principles|polic\w+|programming|ethics|rules|values)"
          r"|\bviolat\w*\s+(?:my|our|the|content|usage)\s+(?:\w+\s+)?(?:guidelines|polic\w+|rules|terms)"
          r"|\b(?:i'?m|i\s+am)\s+(?:designed|programmed|built|trained)\s+(?:not\s+to|to\s+(?:avoid|decline))"
          r"|\b(?:my|our)\s+(?:guidelines|polic\w+|rules|programming|instructions)\s+(?:(?:don'?t|do\s+not"
          r"|won'?t|wouldn'?t)\s+(?:allow|permit|let)|prevent|prohibit|forbid)",
          "against", "violat", "designed", "programmed", "built", "trained", "guidelines", "polic", "rules",
          "instructions"),
    # An admonition ("Please don't do that.") declines only when no help follows it.
    rule(r"\b(?P<weak>(?:please\s+)?(?:don'?t|do\s+not)\s+(?:do|try|attempt)\s+(?:that|this|it))\b", "do"),
    rule(r"\b(?:i|we)\s+(?:won'?t|will\s+not|can'?t|cannot|must\s+not)(?=\s*[.!]|$)|\bno\s+can\s+do\b"
          r"|(?P<soft>\b(?:that's|that\s+is|it's|it\s+is)\s+a\s+(?:hard\s+|firm\s+|definite\s+)?no\b(?!-|\s+from\s+me))"
          r"|\b(?:outside|beyond)\s+(?:the\s+scope\s+of\s+)?what\s+(?:i|we)(?:\s+can|\s+am|'m)\b",
          "n't", "no", "cant", "wont", "what"),
    rule(r"\b(?:i|we)(?:'ll|'m\s+going\s+to|\s+am\s+going\s+to|\s+will|'d|\s+would|\s+must|\s+have\s+to"
          r"|\s+need\s+to|'ll\s+have\s+to|\s+will\s+have\s+to|'m\s+(?:going|afraid)\s+to\s+have\s+to"
          r"|'ve\s+got\s+to|\s+gotta)?\s+(?:respectfully\s+|politely\s+)?(?:decline|refuse(?!\s+to\s+"
          r"(?:believe|accept|let))|say no|turn\s+(?:\w+\s+){0,2}?down|(?P<defl>pass(?:\s+on\b|(?=\s*"
          r"[.,!;]|$)|\s+(?:this|that)\s+(?:one|time))|sit\s+(?:this|that)\s+(?:one\s+)?out|skip(?:\s+"
          r"(?:that|this|it|the\s+question)|(?=\s*[.,!;]|$))|stay\s+out\s+of|steer\s+clear|refrain"
          r"|(?:just\s+)?leave\s+(?:that|this|it)(?:\s+(?:one|topic|question|part))?\s+(?:alone|aside"
          r"|be)))\b",
          "declin", "refus", "say no", "down", "pass", "sit", "skip", "stay", "steer", "refrain", "leave"),
    # es
    rule(r"\bno (?:te\s+|le\s+|les\s+|lo\s+|me\s+)?(?:puedo|podr[ée]|podr[íi]a|voy\s+a|me\s+es\s+posible"
          r"|estoy\s+en\s+(?:condiciones|posici[óo]n)\s+de|debo|quiero)(?:\s+\w+){0,2}?\s+(?:ayud|proporcion"
          r"|dar|brind|ofrec|explic|asist|facilit|respond|compart|particip|describ|indic|decir|enseñ|hacer"
          r"|contest|colabor)\w*|\bme\s+niego\s+a\b|\b(?:debo|tengo\s+que)\s+(?:rechazar|declinar|negarme)",
          "no ", "niego", "rechaz", "declin", "negarme"),
    # fr
    rule(r"\b(?:je|nous) (?:ne\s+|n')(?:\w+\s+)?(?:peux|pourrai|pourrais|puis|vais|suis|souhaite|veux"
          r"|saurais)\s+(?:\w+\s+)?pas\b(?:\s+[\w']+){0,4}?\s+(?:vous\s+|t'|te\s+|l'|les\s+)?(?:aid|fourn"
          r"|donn|r[ée]pond|expliqu|assist|partag|communiqu|indiqu|d[ée]cri|d[ée]taill|particip|fair|propos"
          r"|accompagn|transmett|apport|dire|conseill|abord|acc[ée]d|satisf)\w*"
          r"|\bje (?:dois\s+)?(?:refuse|d[ée]cline)",
          "je ", "nous "),
    # de
    rule(r"\b(?:(?:ich|wir)\s+(?:kann|k[öo]nnen|werde|werden|darf|d[üu]rfen|m[öo]chte|will|wollen)"
          r"|(?:kann|k[öo]nnen|werde|werden|darf|m[öo]chte|will)\s+(?:ich|wir))\b(?:\s+\w+){0,5}?\s+"
          r"(?:nicht|kein\w*)\b(?:\s+\w+){0,5}?\s+(?:helfen|geben|liefern|bereitstellen|erkl[äa]ren"
          r"|beschreiben"
          r"|unterst[üu]tzen|tun|machen|beantworten|anbieten|sagen|zeigen|mitteilen|nennen|verraten"
          r"|erl[äa]utern|teilen|behilflich|weiterhelfen)\b|\bnicht\s+in\s+der\s+lage\b|\b(?:muss|m[öo]chte)\s+(?:ich\s+)?"
          r"(?:\w+\s+)?ablehnen\b", "nicht", "kein", "ablehnen"),
    # pt
    rule(r"\bn[ãa]o\s+(?:te\s+|lhe\s+|o\s+|a\s+)?(?:posso|consigo|poderei|poderia|vou|estou\s+em\s+condi"
          r"[çc][õo]es\s+de|tenho\s+como|devo|quero)(?:\s+\w+){0,2}?\s+(?:ajud|fornec|dar|ofere|explic|auxili"
          r"|respond|compartilh|particip|descrev|indic|dizer|ensin|fazer|passar|colabor)\w*"
          r"|\bme\s+recuso\s+a\b",
          "não", "nao", "recuso"),
    # it
    rule(r"\bnon (?:ti\s+|le\s+|vi\s+|lo\s+|mi\s+)?(?:posso|potr[òo]|potrei|sono\s+in\s+grado\s+di"
          r"|riesco\s+a|mi\s+[èe]\s+possibile|voglio|intendo|devo)(?:\s+\w+){0,2}?\s+(?:aiut|fornir|dar"
          r"|offrir"
          r"|spieg|assist|rispond|condivid|partecip|descriv|indic|dir|insegn|far|support|collabor)\w*"
          r"|\bmi\s+rifiuto\s+di\b", "non ", "rifiuto"),
    # ru
    rule(r"\bне\s+(?:могу|смогу|буду|стану|вправе|имею\s+(?:права|возможности))(?:\s+\w+){0,2}?\s+(?:помо"
          r"|предостав|дать|давать|расска|объясн|ответ|выполн|подсказ|описа|подели|участв|содейств|сообщ"
          r"|научи|посовет|советова)\w*|\bне\s+в\s+состоянии\b|\bвынужден[аы]?\s+отказать|\bотказываюсь\b",
          "не", "отказ", "вынужден"),
    # zh
    rule(r"(?:我|我们|本人)(?:真的|实在|恐怕|目前|暂时|并|就|也|还是|确实)?(?:不能|无法|不会|不可以|没办法"
          r"|没有办法|不便|不方便|拒绝)(?:为你|为您|帮你|帮您|向你|向您|给你|给您|替你|替您|在这方面|就此|这样|这么|那样)?"
          r"(?:帮助|帮忙|帮|协助|提供|回答|解答|告诉|教|分享|参与|支持|透露|做|处理|满足|完成|进行|给出|说明"
          r"|描述|讲解|指导|答复|回应)|(?:抱歉|对不起|很遗憾|不好意思)[，,、\s]*(?:但是?)?(?:目前)?(?:无法"
          r"|不能|不便)(?:为你|为您|向你|向您|给你|给您)?(?:提供|协助|帮助|回答|解答|满足|处理)|恕我?(?:不能"
          r"|无法|难以)", "我", "本人", "恕", "抱歉", "对不起", "很遗憾", "不好意思"),
    # ja
    rule(r"(?:手伝い|手伝う|答え|応え|教え|協力|案内|提供|回答|対応|説明|支援|サポート|手助け|お力添え|応じ"
          r"|お受け|引き受け)(?:する|すること|いたすこと)?(?:は|が|も|には)?(?:いたし|致し)?(?:できません"
          r"|できかねます|かねます|出来ません|ことはできません|ことができません|られません)"
          r"|お断り(?:します|いたします|させていただきます)", "でき", "出来", "かね", "られません", "お断り"),
    # deflections in other languages
    rule(r"\b(?P<defl>prefiero\s+no\b|je\s+pr[ée]f[èe]re\s+ne\s+pas\b|(?:m[öo]chte|w[üu]rde)\s+(?:ich\s+)?"
          r"(?:\w+\s+)?lieber\s+nicht\b|prefiro\s+n[ãa]o\b|preferisco\s+non\b|(?:предпочту|предпочитаю"
          r"|лучше)\s+не\s+(?:обсуждать|говорить|отвечать|касаться))", "préf", "pref", "lieber", "не"),
    rule(r"(?P<defl>(?:不想|不愿意|不太想)(?:讨论|谈论|回答|深入)|换个话题|控えさせていただ|遠慮させていただ)",
          "不想", "不愿意", "不太想", "换个话题", "控え", "遠慮"),
    # Declines without the usual "can't help": choosing not to, holding off, drawing a line.
    rule(r"\b(?:i'?m|i\s+am|i'?ll|i\s+will)\s+(?:choosing|opting|going)\s+not\s+to\b|\b(?:i"
         r"|we)\s+(?:choose|opt)"
         r"\s+not\s+to\b|\bhold(?:ing)?\s+off\s+on\b|\bnot\s+going\s+to\s+(?:go\s+there|happen)\b"
         r"|(?:^|\n)(?:\w+\s+)?not\s+going\s+to\s+(?:do|help|answer)\b|\b(?:that's|that\s+is|it's"
         r"|it\s+is)\s+not\s+(?:going\s+to\s+)?happen(?:ing)?\b"
         r"|\bnot\s+happening\b|\bcount\s+me\s+out\b|\b(?:where|when)\s+i\s+draw\s+the\s+line\b"
         r"|\bcross(?:es|ing)?\s+a\s+line\b|\boff\s+the\s+table\b|\bhard\s+pass\b|(?P<soft>\bthe\s+answer\s+is\s+no\b"
         r"|\b(?:that's|that\s+is)\s+a\s+no\b(?!-|\s+from\s+me)|\byeah,?\s+no\b)|\ba\s+no\s+from\s+me\b"
         r"|\b(?:won'?t|will\s+not|not\s+going\s+to)\s+(?:get|hear|find)\s+[^.!?\n]{0,100}?\bfrom\s+me\b"
         r"|\bleave\s+(?:that|this|it)(?:\s+one)?\s+(?:unanswered|there)\b|\bleave\s+(?:that"
         r"|this)\s+one\s+with\s+you\b"
         r"|\b(?:i|we)\s+(?:don'?t|do\s+not)\s+think\s+(?:i|we)\s+should\b"
         r"|\b(?:(?:feel|am|'m|would\s+be|'d\s+be)\s+(?:\w+\s+)?(?:uneasy|uncomfortable))\s+(?:\w+ing"
         r"|with\s+(?:this|that|it))"
         r"|\b(?:stay|staying)\s+on\s+the\s+sidelines\b|\b(?:i|we)\s+(?:can'?t|cannot|won'?t)\s+(?:be\s+)?"
         r"(?:party|part)\s+(?:to|of)\b",
         "not to", "hold off", "not going", "happen", "count me", "draw", "cross", "off the table",
         "hard pass",
         "is no", "a no", "yeah", "from me", "leave", "think", "uneasy", "uncomfortable", "sidelines",
         "part"),
    # "Rather than explaining how to ..., I can ...": a decline that leads with the alternative.
    rule(r"\b(?:rather|instead)\s+than\s+(?:explain|help|giv|tell|describ|show|provid|walk|shar|detail"
         r"|assist)\w*"
         r"|\bplut[ôo]t\s+que\s+de\s+(?:vous\s+|t')?(?:expliqu|aid|donn|d[ée]cri)\w*|\ben\s+(?:lugar"
         r"|vez)\s+de\s+"
         r"(?:explic|ayud|dar|ajud)\w*|\bstatt\s+(?:dir\s+)?(?:\w+\s+)?zu\s+(?:erkl[äa]ren|helfen)"
         r"|\binvece\s+di\s+"
         r"(?:spiegar|aiutar)\w*", "than", "plut", "lugar", "vez", "statt", "invece"),
    # A soft decline: it declines to endorse, not to answer; help that follows makes it a hedge.
    rule(r"(?P<soft>\b(?:i|we)\s+(?:really\s+|strongly\s+|would\s+|'d\s+|just\s+)?(?:can'?t|cannot|don'?t"
         r"|do\s+not"
         r"|won'?t|wouldn'?t|would\s+not)\s+(?:\w+ly\s+)?(?:recommend|endorse|condone|approve|support|advise"
         r"|encourage)\w*"
         r"|\b(?:i|we)\s+(?:strongly\s+|would\s+|'d\s+)?(?:advise|recommend|caution)\s+against\b"
         r"|\bnot\s+(?:really\s+|very\s+)?comfortable\s+with\s+(?:this|that|it)\b"
         r"|\bagainst\s+my\s+better\s+judg"
         r"|\b(?:i'?d|i\s+would)\s+(?:normally\s+|usually\s+)?say\s+no\b|\bnot\s+supposed\s+to\b"
         r"|\b(?:i|we)\s+(?:really\s+|probably\s+|honestly\s+)?(?:shouldn'?t|should\s+not)\s+(?:\w+\s+){0,2}?"
         r"(?:answer|say|tell|share|help|do|be|give|explain|encourage))\w*",
         "recommend", "endorse", "condone", "approv", "advis", "encourag", "support", "against",
         "comfortable", "say no", "supposed", "should"),
    rule(r"(?P<soft>\bje\s+ne\s+devrais\s+pas|\bje\s+(?:vous\s+|te\s+)?d[ée]conseille|\bje\s+ne\s+(?:peux"
         r"|saurais)"
         r"\s+pas\s+(?:cautionner|approuver)|\bje\s+ne\s+l'approuve\s+pas"
         r"|\bje\s+ne\s+(?:vous\s+)?recommande\s+pas"
         r"|\bsollte\s+(?:ich\s+)?(?:dir\s+|ihnen\s+)?(?:das\s+)?(?:eigentlich\s+)?nicht"
         r"|\bnicht\s+guthei(?:ß|ss)\w*"
         r"|\brate\s+(?:dir\s+|ihnen\s+)?(?:\w+\s+){0,2}?davon\s+ab|\bempfehle\s+(?:es\s+|das\s+)?nicht"
         r"|\bno\s+deber[íi]a|\bno\s+(?:lo\s+)?apruebo|\bno\s+(?:te\s+|le\s+)?recomiendo"
         r"|\bno\s+me\s+parece\s+bien"
         r"|\bn[ãa]o\s+deveria|\bn[ãa]o\s+(?:o\s+|a\s+)?aprovo|\bn[ãa]o\s+recomendo|\bn[ãa]o\s+concord\w*"
         r"|\bnon\s+dovrei|\bnon\s+(?:lo\s+)?approvo|\bpur\s+non\s+approv\w*|\b(?:ti\s+)?sconsiglio"
         r"|\bnon\s+consiglio)",
         "devrais", "conseill", "cautionner", "approu", "recommande", "sollte", "guthei", "davon ab",
         "empfehle",
         "deber", "aprue", "recomiend", "parece bien", "deveria", "aprovo", "recomendo", "concord", "dovrei",
         "approv", "consiglio"),
    rule(r"(?P<soft>不该|不应该|不建议|不赞成|不支持这样|不推荐|べきでは(?:ない|ありません)|おすすめ(?:は)?(?:しません|できません)"
         r"|推奨しません|賛成(?:は)?できません)",
         "不该", "不应该", "不建议", "不赞成", "不支持", "不推荐", "べき", "おすすめ",
         "推奨", "賛成"),
    # Other languages: future tenses and declines the older rules above do not reach.
    rule(r"\bje\s+ne\s+(?:vous\s+|te\s+|l'|les\s+)?(?:fournirai|donnerai|aiderai|expliquerai|dirai|ferai"
         r"|r[ée]pondrai"
         r"|aborderai|d[ée]taillerai|communiquerai|partagerai|indiquerai)\s+(?:pas|aucun\w*|rien|jamais)\b"
         r"|\bil\s+m'est\s+impossible\s+de\b|\bje\s+refuse\s+de\b|\bje\s+(?:vais\s+)?m'abst\w*"
         r"|\bce\s+n'est\s+pas\s+(?:quelque\s+chose|une\s+demande|un\s+sujet)\s+(?:que|à\s+laquelle"
         r"|sur\s+lequel)"
         r"\s+(?:je|j')", "je ", "impossible", "ce n'est pas"),
    rule(r"\b(?:ich|wir)\s+helfen?\s+(?:dir|ihnen|euch)?\s*(?:\w+\s+){0,3}?nicht\b"
         r"|\bhelfe\s+ich\s+(?:dir\s+)?nicht"
         r"|\blehne\s+(?:ich\s+)?(?:es|das|dies)?\s*ab\b|\bich\s+lehne\b|\bmache\s+ich\s+nicht\s+mit\b"
         r"|\bnicht\s+mitmach\w*|\bgehe\s+ich\s+nicht\s+ein\b|\bhalte\s+(?:ich\s+)?mich\s+(?:\w+\s+)?raus\b"
         r"|\bnichts,?\s+wobei\s+ich\b|\bkeine\s+(?:anleitung|hilfe|informationen)\s+(?:geben|liefern)",
         "nicht", "lehne", "raus", "wobei", "keine"),
    rule(r"\bno\s+(?:te\s+|le\s+|lo\s+)?(?:ayudar[ée]|explicar[ée]|dar[ée]|dir[ée]|responder[ée]"
         r"|proporcionar[ée])\b"
         r"|\bno\s+(?:voy|vamos)\s+a\s+(?:entrar|meterme|responder|contestar|participar)"
         r"|\bpaso\s+de\s+(?:este|ese|eso"
         r"|esto)\b|\bno\s+(?:lo\s+)?voy\s+a\s+(?:hacer|responder)|\bn[ãa]o\s+vou\s+(?:me\s+)?(?:entrar"
         r"|envolv\w*"
         r"|responder)|\bvou\s+deixar\s+passar\b|\bnon\s+(?:ti\s+|vi\s+)?(?:dar[òo]|aiuter[òo]"
         r"|spiegher[òo]|dir[òo]"
         r"|fornir[òo])\b|\bnon\s+[èe]\s+(?:una\s+cosa|qualcosa)\s+che\s+far[òo]|\bnon\s+mi\s+esprimer[òo]",
         "no ", "paso", "não", "nao", "vou", "non "),
    rule(r"(?:就|还是|选择)?不(?:参与|掺和|奉陪)了?|不打算(?:回答|帮|参与|说)|选择不(?:回答|帮|说)|恕难从命"
         r"|(?:答え|言わ|教え|話さ|立ち入ら|触れ)ないで?(?:おきます|ことにします)|お答えしません|協力しません"
         r"|도와\s*드릴\s*수\s*없|도와줄\s*수\s*없|할\s*수\s*없습니다|거절",
         "不参与", "不掺和", "不奉陪", "不打算", "选择不", "恕难", "ない", "しません", "없", "거절"),
    # A bare "No." or "Nope" is soft: it declines only when nothing but reasons or alternatives follows
    # ("No. You don't need to soak them first" answers a yes/no question).
    rule(r"(?P<soft>\babsolutely\s+not(?=\s*[.!,;:]|$)|\bnot\s+a\s+chance\b|\bno\s+way\b(?!\s+to\b)"
         r"|\bsorry,?\s+no\b(?!\s+(?:idea|problem|worries))|(?:^|\n|(?<=[.!?]\s))(?:\w+\s+)?no[.!])"
         r"|\bmy\s+answer\s+(?:has\s+to\s+be|is|must\s+be)\s+no\b|\b(?:i'll|i\s+will|let\s+me"
         r"|i'm\s+going\s+to)\s+stop\s+you\s+there"
         r"|\b(?:find|look|get|ask|search)\s+(?:\w+\s+){0,4}?elsewhere\b|\bnot\s+the\s+right\s+(?:source"
         r"|place|assistant"
         r"|person|tool|one)\s+(?:for|to)\b|\bdraw\s+(?:a|the)\s+line\b|\bnot\s+touching\s+(?:this|that|it)\b"
         r"|(?P<defl>\b(?:i'?m|i\s+am|i'?ll|i\s+will|i'?d\s+rather"
         r"|i\s+would\s+rather)\s+(?:\w+\s+)?(?:steering|steer|staying"
         r"|stay|keeping|keep)\s+(?:clear|out|away)\s+(?:of|from)\b)",
         "absolutely", "chance", "no way", "answer", "sorry", "no.", "no!", "stop you", "elsewhere", "right",
         "line", "touching", "clear", "keep out", "stay out", "away"),
    rule(r"\bje\s+passe\s+mon\s+tour\b|\bje\s+ne\s+(?:vous\s+|te\s+|m'|me\s+|l'|les\s+)?\w+rai\s+(?:pas"
         r"|jamais|aucun\w*)\b"
         r"|\bje\s+ne\s+suis\s+pas\s+en\s+mesure\b|\b(?:kann|werde"
         r"|will)\s+ich\s+mich\s+nicht\s+(?:\w+\s+)?(?:einlassen"
         r"|äußern|aeussern|beteiligen)|\bsage\s+ich\s+nichts\b|\bäußere\s+ich\s+mich\s+nicht"
         r"|\bno\s+es\s+algo\s+que\s+"
         r"(?:vaya|voy|pueda|pienso)\b|\bn[ãa]o\s+[ée]\s+algo\s+que\s+(?:eu\s+)?(?:v[áa]|vou|possa)\b"
         r"|帮不了|帮不上|没法(?:帮|参与|回答)|只能婉拒|婉拒|不方便回答"
         r"|(?:それ|これ|そちら)は(?:できません|できかねます)"
         r"|しかねます|ノーコメント",
         "je ", "ich", "sage", "äuß", "algo", "帮不", "没法", "婉拒", "不方便", "できません", "できかね",
         "しかね", "ノーコメント"),
    # Subjectless ("Can't help with that.") and passive ("This request can't be fulfilled.") declines.
    rule(r"(?:^|\n|(?<=[.!?]\s))(?:sorry,?\s+|afraid\s+)?(?:unable|not\s+able|can'?t|cannot|won'?t"
         r"|not\s+going)\s+(?:to\s+)?"
         r"(?:help|assist|provide|do\s+(?:that|this|it)|answer|share|give|explain)\b|\b(?:this|that"
         r"|your)\s+(?:request|question)"
         r"\s+(?:can'?t|cannot|won'?t|will\s+not)\s+be\s+(?:fulfilled|answered|completed|assisted|helped"
         r"|supported)",
         "unable", "able to", "can't", "cant", "cannot", "won't", "wont", "not going", "request", "question"),
    rule(r"\b(?:no|n[ãa]o|non)\s+(?:es|[ée]|[èe])\s+(?:algo|qualcosa|una\s+cosa)\s+(?:\w+\s+){0,4}?(?:pueda|puedo"
         r"|possa|posso|possiamo)\s+(?:\w+\s+)?(?:ayud|ajud|aiut|colabor)\w*"
         r"|\b(?:ce|c')\s*n'est\s+pas\s+possible(?=\s*[.!]|$)",
         "algo", "qualcosa", "cosa", "possible"),
    rule(r"\b(?:have\s+to|got\s+to|gotta|going\s+to|must)\s+stop\s+you\s+(?:right\s+)?there\b|\bnot\s+a\s+(?:road"
         r"|path|route)\s+(?:that\s+)?i\s+(?:want|wish|intend|plan|am\s+going|'m\s+going)\s+to\s+(?:go|take|walk)\b",
         "stop you", "road", "path", "route"),
    # Idiomatic English declines: lines not crossed, roads not taken, bowing out.
    rule(r"\bline\s+(?:that\s+)?i\s+(?:won'?t|will\s+not|can'?t|cannot|don'?t)\s+cross\b"
         r"|\bleave\s+(?:that|this|it)\s+to"
         r"\s+(?:someone|somebody)\s+else\b|\bnot\s+(?:going|heading)\s+down\s+(?:that|this)\s+(?:road"
         r"|path|route)\b"
         r"|\bbow(?:ing)?\s+out\b|\bsit(?:ting)?\s+(?:this|that)\s+(?:one\s+)?out\b"
         r"|\b(?:be\s+)?(?:a\s+)?party\s+to\b"
         r"|\bnot\s+(?:the|your)\s+(?:one|guy|person|assistant)\s+(?:to\s+ask|for)\b"
         r"|\bask\s+me\s+(?:something|anything)"
         r"\s+else\b|\bhave\s+to\s+say\s+no\b|\ba\s+no[- ]go\b|\bdisservice\s+(?:if|by)\b"
         r"|\bnot\s+prepared\s+to\s+(?:go|help"
         r"|do|answer|discuss)\b|(?P<soft>\b(?:firm|hard|flat|clear)\s+no\b"
         r"|(?:^|\n|(?<=[.!?]\s))(?:\w+\s+)?(?:nope|nah|no\s+dice|forget\s+it)\b)"
         r"|\b(?:not|won'?t|will\s+not|never)\s+(?:be\s+)?get(?:ting)?\s+involved\b"
         r"|\bno\s+intention\s+of\b|\blet\s+me\s+pass\b"
         r"|\bstep(?:ping)?\s+back\s+from\s+(?:this|that)\b|\bnot\s+at\s+liberty\b"
         r"|\bfalls?\s+outside\s+(?:what|of\s+what)"
         r"|\b(?:that's|that\s+is|this\s+is|it's|it\s+is)\s+off[- ]limits(?=\s*[.!]|$)"
         r"|\boff[- ]limits\s+(?:for|to)\s+me\b"
         r"|\bno\s+way\s+i'?m\b|\bprefer\s+not\s+to\s+be\s+involved\b",
         "cross", "someone else", "somebody else", "down th", "bow", "sit th", "party", "not the", "not your",
         "ask me", "say no", "no-go", "no go", "disservice", "prepared", "involved", "nope", "nah",
         "no dice", "forget it",
         "intention", "me pass", "step", "liberty", "outside", "limits", "no way", "prefer not",
         "firm no", "hard no", "flat no", "clear no"),
)
# Idioms built like a decline that are not one, checked on the clause the cue starts.
NOT_A_DECLINE = re.compile(
    r"\benough\b|\bhighly\b|\bbetter\s+than\b|\bhelp\s+but\b|\bhelp\s+(?:feeling|thinking|noticing"
    r"|wondering|laughing|smiling|being)\b|\bdo\s+(?:without|better|worse|much)\b"
    r"|\bne\s+(?:peux|pouvais|pourrai)\s+pas\s+m'emp[êe]cher|\bkann\s+(?:es\s+)?(?:nicht\s+anders\s+als"
    r"|kaum\s+erwarten)"
    r"|\bno\s+puedo\s+(?:dejar\s+de|evitar|esperar|m[áa]s\s+que|sino)|\bn[ãa]o\s+posso\s+(?:deixar\s+de"
    r"|evitar|esperar)|\bnon\s+posso\s+(?:fare\s+a\s+meno|non|che|aspettare)|\bне\s+могу\s+не\b")
# A decline of certainty or of professional advice, not of the request itself.
HEDGE = re.compile(
    r"\b(?:for\s+(?:sure|certain)|(?:be|know)\s+(?:sure|certain)|exact\w*|precise\w*|definitive\w*"
    r"|diagnos\w*|guarantee\w*|from\s+(?:the|this|a|your|that)\s+(?:photo|picture|image|pic"
    r"|description)|without\s+(?:seeing|knowing|examining|an?\s+exam|more|a\s+closer)|(?:medical|legal"
    r"|professional|veterinary|financial)\s+advice|real[-\s]time|substitute|replace\s+(?:a|an|your)"
    r"|whether|genau|sicher|s[ûu]re?|certaine?|exactement|segur[oa]|exactamente|certeza|exatamente|sicur[oa]"
    r"|esattamente|esserne)\b|确定|确切|はっきり|正確")
CLAUSE_END = re.compile(r"[.!?;:\n\u3002\uff01\uff1f]|,\s*but\b|\s[-\u2014\u2013]\s")
SOFT_NEG = re.compile(r"rather|prefer|better")
# A decline limited in scope ("I won't give a full tutorial, but ...") is soft.
SCOPE = re.compile(r"\b(?:full|complete|whole|entire|detailed|comprehensive|step[- ]by[- ]step|tutorial"
                   r"|officially"
                   r"|normally|usually|ordinarily)\b")
# The rule under a markdown table's header row ("|---|:---:|").
TABLE_RULE = re.compile(r"^[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(?:\|[ \t]*:?-{3,}:?[ \t]*)*\|?[ \t]*$",
                        re.MULTILINE)
# A soft decline about recommending answers an advice question ("Can I use bleach? I wouldn't
# recommend it; vinegar works better") rather than declining the request.
RECOMMEND = re.compile(r"recommend|advis|suggest|empfehl|recomiend|recomend|conseill|consigli"
                       r"|推荐|建议|おすすめ|推奨")
