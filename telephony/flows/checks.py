"""What a schema cannot check: targets exist, steps are reachable, nothing loops unattended.

A chain of say/play/pause/sms steps is rendered into one response, and a redirect to a flow
is followed by Twilio at once. A cycle made only of those would never wait for the caller,
so it is refused here, when the document is loaded, rather than cut off during a call.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping

from telephony.config.settings import url_host_allowed
from telephony.flows.data import DataSchema, data_placeholders, without_placeholders
from telephony.flows.model import (
    CHAINED,
    WITHOUT_NEXT,
    Dial,
    Flow,
    FlowBook,
    Gather,
    Redirect,
    Say,
    Sms,
    Step,
)
from telephony.flows.problems import FlowProblem

# The most steps one response may chain; longer chains are refused when loaded, and the
# renderer stops there too (for books built in code).
MAX_CHAINED_STEPS = 50

Node = tuple[str, str]  # (flow id, step id)


# The steps of one flow left out of it for schema problems, by id, each with the ids of the
# steps it may lead to.
Refused = Mapping[str, Collection[str]]


def check_flows(
    flows: Mapping[str, Flow],
    flow_ids: Collection[str],
    refused: Mapping[str, Refused] | None = None,
) -> list[FlowProblem]:
    """Problems of `flows`.

    `flow_ids` is every flow id of the document (for redirects); `refused` names, by flow,
    the steps left out of `flows` for schema problems: they exist, so they are targets and
    nodes of the reachability graph, leading to the steps given for each.
    """
    refused = refused or {}
    problems: list[FlowProblem] = []
    for flow in flows.values():
        problems += _check_flow(flow, flow_ids, refused.get(flow.id, {}))
    problems += _loops(flows)
    problems += _long_chains(flows)
    problems += data_problems(flows)
    return problems


def verb_name(step: Step) -> str:
    """The verb of `step` as the document spells it (say, gather, ...)."""
    return type(step.verb).__name__.lower()


def _check_flow(flow: Flow, flow_ids: Collection[str], refused: Refused) -> list[FlowProblem]:
    problems = []
    step_ids = flow.steps.keys() | refused.keys()
    if flow.start not in step_ids:
        problems.append(FlowProblem(flow.id, None, f"the start step {flow.start!r} does not exist"))
    for step in flow.steps.values():
        reasons = _step(step, step_ids, flow_ids)
        problems += [FlowProblem(flow.id, step.id, reason) for reason in reasons]
    problems += _unreachable(flow, refused)
    return problems


def _step(step: Step, step_ids: Collection[str], flow_ids: Collection[str]) -> Iterator[str]:
    for role, target in step.targets():
        if target not in step_ids:
            yield f"{role} goes to step {target!r}, which does not exist"
    verb = step.verb
    if step.next is not None and isinstance(verb, WITHOUT_NEXT):
        yield f"{verb_name(step)} does not go on to next"
    if isinstance(verb, Gather) and not verb.branches and verb.fallback is None:
        yield "a gather needs branches or a fallback"
    if isinstance(verb, Redirect) and verb.flow is not None and verb.flow not in flow_ids:
        yield f"redirect goes to flow {verb.flow!r}, which does not exist"


def _unreachable(flow: Flow, refused: Refused) -> list[FlowProblem]:
    step_ids = flow.steps.keys() | refused.keys()
    if flow.start not in step_ids:
        return []  # already reported; every step would be listed as unreachable
    seen = {flow.start}
    todo = [flow.start]
    while todo:
        for target in _leads_to(flow, refused, todo.pop()):
            if target in step_ids and target not in seen:
                seen.add(target)
                todo.append(target)
    return [
        FlowProblem(flow.id, step_id, f"unreachable from the start step {flow.start!r}")
        for step_id in [*flow.steps, *refused]
        if step_id not in seen
    ]


def _leads_to(flow: Flow, refused: Refused, step_id: str) -> Collection[str]:
    """Its targets; for a refused step, the steps it names (a superset: see _refused in
    document.py), so that no step is called unreachable that the fixed step would reach."""
    step = flow.steps.get(step_id)
    return [target for _, target in step.targets()] if step is not None else refused[step_id]


def _successor(flows: Mapping[str, Flow], node: Node, redirects: bool) -> Node | None:
    """Where the flow goes from `node` without waiting for the caller or for Twilio."""
    flow = flows[node[0]]
    step = flow.steps[node[1]]
    if isinstance(step.verb, CHAINED) and step.next is not None and step.next in flow.steps:
        return flow.id, step.next
    target = flows.get(step.verb.flow or "") if isinstance(step.verb, Redirect) else None
    if redirects and target is not None and target.start in target.steps:
        return target.id, target.start
    return None


def _nodes(flows: Mapping[str, Flow]) -> list[Node]:
    return [(flow.id, step_id) for flow in flows.values() for step_id in flow.steps]


def _loops(flows: Mapping[str, Flow]) -> list[FlowProblem]:
    """Cycles of steps that go on without waiting (each step has at most one such exit)."""
    problems = []
    done: set[Node] = set()
    for first in _nodes(flows):
        walk: list[Node] = []
        node: Node | None = first
        while node is not None and node not in done and node not in walk:
            walk.append(node)
            node = _successor(flows, node, redirects=True)
        if node is not None and node in walk:
            problems.append(_loop_problem(walk[walk.index(node) :]))
        done.update(walk)
    return problems


def _loop_problem(cycle: list[Node]) -> FlowProblem:
    one_flow = len({flow for flow, _ in cycle}) == 1
    names = [step if one_flow else f"{flow}/{step}" for flow, step in [*cycle, cycle[0]]]
    reason = f"steps {' -> '.join(names)} loop without waiting for the caller"
    return FlowProblem(cycle[0][0], cycle[0][1], reason)


def _long_chains(flows: Mapping[str, Flow]) -> list[FlowProblem]:
    """Chains of more than MAX_CHAINED_STEPS steps in one response, reported at their head."""
    length: dict[Node, int] = {}

    def chain(node: Node) -> int:
        walk: list[Node] = []
        current: Node | None = node
        while current is not None and current not in length and current not in walk:
            walk.append(current)
            current = _successor(flows, current, redirects=False)
        tail = length.get(current, 0) if current is not None else 0
        for position, member in enumerate(reversed(walk), start=1):
            length[member] = tail + position  # a cycle (reported by _loops) counts once
        return length[node]

    heads = [node for node in _nodes(flows) if chain(node) > MAX_CHAINED_STEPS]
    followers = {_successor(flows, node, redirects=False) for node in heads}
    return [
        FlowProblem(flow, step, f"chains more than {MAX_CHAINED_STEPS} steps into one response")
        for flow, step in heads
        if (flow, step) not in followers
    ]


def destination_problems(
    book: FlowBook, refusal: Callable[[str], str | None], url_hosts: Collection[str]
) -> list[FlowProblem]:
    """What the toll-fraud guard refuses in a book: numbers its dial steps call, and
    redirect URLs outside the allowed hosts (Twilio would run the TwiML found there)."""
    problems = []
    for flow in book.flows.values():
        for step_id, step in flow.steps.items():
            reason = _guarded(step.verb, refusal, url_hosts)
            if reason is not None:
                problems.append(FlowProblem(flow.id, step_id, reason))
    return problems


def _guarded(
    verb: object, refusal: Callable[[str], str | None], url_hosts: Collection[str]
) -> str | None:
    if isinstance(verb, Dial):
        reason = refusal(verb.number)
        return f"dial.number {reason}" if reason else None
    if isinstance(verb, Redirect) and verb.url and not url_host_allowed(verb.url, url_hosts):
        return "redirect.url names a host not in ALLOWED_URL_HOSTS"
    return None


# The call-flows schema's maxLength of a say text and of an sms body: a text whose data
# could make it longer is refused when loaded, so no call can fail on its values.
SAY_CHARS = 4096
SMS_CHARS = 1600


def data_problems(flows: Mapping[str, Flow]) -> list[FlowProblem]:
    """What a flow's data declares, and what its texts and redirects ask of it: every
    {data.<name>} names a declared property, a text fits its limit whatever the values,
    and no redirect goes to a flow that needs data (a redirect carries none)."""
    problems = []
    for flow in flows.values():
        if flow.data is not None:
            problems += [FlowProblem(flow.id, None, reason) for reason in flow.data.problems()]
        for step in flow.steps.values():
            reasons = _placeholder_problems(step, flow.data)
            reasons += _redirect_data_problems(step, flows)
            problems += [FlowProblem(flow.id, step.id, reason) for reason in reasons]
    return problems


def _texts(step: Step) -> Iterator[tuple[str, str, int]]:
    """(where, text, limit) for every text of `step` that may hold data placeholders."""
    verb = step.verb
    if isinstance(verb, Say):
        yield "say", verb.text, SAY_CHARS
    elif isinstance(verb, Sms):
        yield "sms.body", verb.body, SMS_CHARS
    elif isinstance(verb, Gather):
        for name in ("prompt", "retry_prompt"):
            for index, item in enumerate(getattr(verb, name)):
                if isinstance(item, Say):
                    yield f"gather.{name}[{index}].say", item.text, SAY_CHARS


def _placeholder_problems(step: Step, data: DataSchema | None) -> list[str]:
    reasons = []
    for where, text, limit in _texts(step):
        names = data_placeholders(text)  # a name said twice counts twice in the length
        declared = data.properties if data is not None else {}
        unknown = [name for name in dict.fromkeys(names) if name not in declared]
        reasons += [_unknown_placeholder(where, name, data) for name in unknown]
        if data is not None and names and not unknown:
            longest = len(without_placeholders(text)) + sum(map(data.max_chars, names))
            if longest > limit:
                reasons.append(
                    f"{where} can be {longest} characters with its data, more than {limit}: "
                    "lower the maxLength of its data"
                )
    return reasons


def _unknown_placeholder(where: str, name: str, data: DataSchema | None) -> str:
    placeholder = "{data." + name + "}"
    if data is None:
        return f"{where} says {placeholder}, but the flow declares no data"
    return f"{where} says {placeholder}, which the flow's data does not declare"


def _redirect_data_problems(step: Step, flows: Mapping[str, Flow]) -> list[str]:
    verb = step.verb
    target = flows.get(verb.flow or "") if isinstance(verb, Redirect) else None
    if target is None or target.data is None:
        return []
    return [f"redirect goes to flow {target.id!r}, which needs data: a redirect carries none"]
