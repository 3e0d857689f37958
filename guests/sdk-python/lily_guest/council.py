"""The council data model (mirrors `contract/src/council.rs`): inputs,
reports, findings, and the JSON Schemas a runnable declares for them. The
schema texts are byte-for-byte the Rust contract's (a host test checks)."""

from dataclasses import dataclass, field
from typing import List, Optional

WORKSPACE_GUEST_PATH = "/workspace"

_FINDING = '{"type":"object","additionalProperties":false,"required":["title","recommendation","confidence"],"properties":{"title":{"type":"string","minLength":1},"recommendation":{"type":"string"},"confidence":{"type":"number","minimum":0,"maximum":1},"evidence":{"type":"array","items":{"type":"string"}}}}'
_RANKED = '{"type":"object","additionalProperties":false,"required":["title","recommendation","confidence","source_specialist","evidence"],"properties":{"title":{"type":"string","minLength":1},"recommendation":{"type":"string"},"confidence":{"type":"number","minimum":0,"maximum":1},"source_specialist":{"type":"string"},"evidence":{"type":"array","items":{"type":"string"}}}}'
_REPORT = '{"type":"object","additionalProperties":false,"required":["specialist","status","findings","notes"],"properties":{"specialist":{"type":"string"},"status":{"enum":["ok","error"]},"findings":{"type":"array","items":' + _FINDING + '},"notes":{"type":"string"}}}'
_SCHEMA = '"$schema":"https://json-schema.org/draft/2020-12/schema",'


def specialist_input_schema() -> str:
    return '{' + _SCHEMA + '"type":"object","additionalProperties":false,"required":["topic"],"properties":{"topic":{"type":"string","minLength":1},"context":{"type":"array","items":{"type":"string"}},"workspace":{"type":["string","null"]}}}'


def specialist_output_schema() -> str:
    return '{' + _SCHEMA + '"type":"object","additionalProperties":false,"required":["findings","notes"],"properties":{"findings":{"type":"array","items":' + _FINDING + '},"notes":{"type":"string"}}}'


def synth_input_schema() -> str:
    return '{' + _SCHEMA + '"type":"object","additionalProperties":false,"required":["topic","max_findings","reports"],"properties":{"topic":{"type":"string","minLength":1},"max_findings":{"type":"integer","minimum":1,"maximum":20},"reports":{"type":"array","items":' + _REPORT + '}}}'


def council_output_schema() -> str:
    return '{' + _SCHEMA + '"type":"object","additionalProperties":false,"required":["topic","summary","ranked_findings","participating_specialists","failed_specialists","reports"],"properties":{"topic":{"type":"string"},"summary":{"type":"string"},"ranked_findings":{"type":"array","items":' + _RANKED + '},"participating_specialists":{"type":"array","items":{"type":"string"}},"failed_specialists":{"type":"array","items":{"type":"string"}},"reports":{"type":"array","items":' + _REPORT + '}}}'


class InvalidInput(ValueError):
    """The input does not match the schema (becomes `invalid_input`)."""


def _obj(v, what, required, optional=()):
    if not isinstance(v, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    for k in required:
        if k not in v:
            raise InvalidInput(f"{what}: missing field `{k}`")
    for k in v:
        if k not in required and k not in optional:
            raise InvalidInput(f"{what}: unknown field `{k}`")
    return v


def _str(v, what):
    if not isinstance(v, str):
        raise InvalidInput(f"{what} must be a string")
    return v


def _strs(v, what):
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise InvalidInput(f"{what} must be an array of strings")
    return list(v)


def _conf(v, what):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= v <= 1.0):
        raise InvalidInput(f"{what} must be a number from 0 to 1")
    return float(v)


@dataclass
class Finding:
    title: str
    recommendation: str
    confidence: float
    evidence: List[str] = field(default_factory=list)

    def to_json(self):
        return {"title": self.title, "recommendation": self.recommendation, "confidence": float(self.confidence), "evidence": list(self.evidence)}

    @staticmethod
    def from_json(v, what="finding"):
        _obj(v, what, ("title", "recommendation", "confidence"), ("evidence",))
        t = _str(v["title"], f"{what}.title")
        if not t:
            raise InvalidInput(f"{what}.title must not be empty")
        return Finding(t, _str(v["recommendation"], f"{what}.recommendation"), _conf(v["confidence"], f"{what}.confidence"), _strs(v.get("evidence", []), f"{what}.evidence"))

    def check(self, what="finding"):
        Finding.from_json(self.to_json(), what)


@dataclass
class SpecialistInput:
    topic: str
    context: List[str] = field(default_factory=list)
    workspace: Optional[str] = None

    @staticmethod
    def from_json(v):
        _obj(v, "input", ("topic",), ("context", "workspace"))
        topic = _str(v["topic"], "topic")
        if not topic.strip():
            raise InvalidInput("topic must not be empty")
        ws = v.get("workspace")
        if ws is not None:
            _str(ws, "workspace")
        return SpecialistInput(topic, _strs(v.get("context", []), "context"), ws)


@dataclass
class Report:
    specialist: str
    status: str
    findings: List[Finding]
    notes: str

    def to_json(self):
        return {"specialist": self.specialist, "status": self.status, "findings": [f.to_json() for f in self.findings], "notes": self.notes}

    @staticmethod
    def from_json(v, what="report"):
        _obj(v, what, ("specialist", "status", "findings", "notes"))
        if v["status"] not in ("ok", "error"):
            raise InvalidInput(f"{what}.status must be ok or error")
        fs = v["findings"]
        if not isinstance(fs, list):
            raise InvalidInput(f"{what}.findings must be an array")
        return Report(_str(v["specialist"], f"{what}.specialist"), v["status"], [Finding.from_json(f, f"{what}.findings[{i}]") for i, f in enumerate(fs)], _str(v["notes"], f"{what}.notes"))


@dataclass
class SynthInput:
    topic: str
    max_findings: int
    reports: List[Report]

    @staticmethod
    def from_json(v):
        _obj(v, "input", ("topic", "max_findings", "reports"))
        topic = _str(v["topic"], "topic")
        if not topic:
            raise InvalidInput("topic must not be empty")
        m = v["max_findings"]
        if isinstance(m, bool) or not isinstance(m, int) or not (1 <= m <= 20):
            raise InvalidInput("max_findings must be an integer from 1 to 20")
        rs = v["reports"]
        if not isinstance(rs, list):
            raise InvalidInput("reports must be an array")
        return SynthInput(topic, m, [Report.from_json(r, f"reports[{i}]") for i, r in enumerate(rs)])


@dataclass
class RankedFinding:
    title: str
    recommendation: str
    confidence: float
    source_specialist: str
    evidence: List[str] = field(default_factory=list)

    def to_json(self):
        return {"title": self.title, "recommendation": self.recommendation, "confidence": float(self.confidence), "source_specialist": self.source_specialist, "evidence": list(self.evidence)}


@dataclass
class CouncilOutput:
    topic: str
    summary: str
    ranked_findings: List[RankedFinding]
    participating_specialists: List[str]
    failed_specialists: List[str]
    reports: List[Report]

    def to_json(self):
        return {
            "topic": self.topic,
            "summary": self.summary,
            "ranked_findings": [f.to_json() for f in self.ranked_findings],
            "participating_specialists": list(self.participating_specialists),
            "failed_specialists": list(self.failed_specialists),
            "reports": [r.to_json() for r in self.reports],
        }
