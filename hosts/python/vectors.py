"""A Python host for levee policy components, held to the shared decision vectors.

    python vectors.py ../../tests/vectors/decisions.json standard=standard.wasm

Each NAME=FILE argument is a policy component. It is instantiated by the
PyPI `wasmtime` bindings with an empty linker: a policy imports nothing.
For every suite of the vectors file, the host configures the suite's policy,
asks it `on-request` and `on-outcome` for each vector, and compares the
answers with the recorded ones (the native core's). It exits 0 only when
every answer agrees.

Values cross in the canonical JSON form of `levee_policy_core::wire`
(records keyed by WIT names, variants as {tag, val}, a u64 as a number or a
decimal string). The conversion is driven by the component's own function
types, so nothing here restates the contract.
"""

import json
import sys
from importlib.metadata import version

from wasmtime import Engine, Store
from wasmtime.component import (
    Component, EnumType, Linker, ListType, OptionType, Record, RecordType,
    ResultType, Variant, VariantType, U64,
)

POLICY = "levee:policy/policy@0.1.0"


def lower(value, ty):
    """Canonical JSON -> the value wasmtime-py takes for type `ty`."""
    if isinstance(ty, RecordType):
        record = Record()
        for name, field_ty in ty.fields:
            setattr(record, name, lower(value.get(name), field_ty))
        return record
    if isinstance(ty, OptionType):
        return None if value is None else lower(value, ty.payload)
    if isinstance(ty, VariantType):
        case_ty = dict(ty.cases)[value["tag"]]
        payload = None if case_ty is None else lower(value["val"], case_ty)
        # wasmtime-py passes a variant whose cases have payloads of distinct
        # Python classes as the bare payload, and the others as a Variant.
        return Variant(value["tag"], payload) if ty._tagged() else payload
    if isinstance(ty, ListType):
        return [lower(v, ty.element) for v in value]
    if isinstance(ty, U64):
        return int(value)
    return value  # bool, string, smaller integers, enum case names


def lift(value, ty):
    """A value wasmtime-py returned for type `ty` -> canonical JSON."""
    if isinstance(ty, RecordType):
        return {name: lift(getattr(value, name), field_ty) for name, field_ty in ty.fields}
    if isinstance(ty, OptionType):
        return None if value is None else lift(value, ty.payload)
    if isinstance(ty, VariantType):
        tag = value.tag if ty._tagged() else untagged_case(value, ty)
        case_ty = dict(ty.cases)[tag]
        out = {"tag": tag}
        if not ty._tagged():
            value = Variant(tag, value)
        if case_ty is not None:
            out["val"] = lift(value.payload, case_ty)
        return out
    if isinstance(ty, ListType):
        return [lift(v, ty.element) for v in value]
    if isinstance(ty, U64):
        return value if value <= 2**53 - 1 else str(value)
    if isinstance(ty, EnumType):
        return value
    return value


def untagged_case(value, ty):
    """The case of an untagged variant value: the one whose payload class it has."""
    for name, case_ty in ty.cases:
        classes = set()
        if case_ty is None:
            classes.add(type(None))
        else:
            case_ty.add_classes(classes)
        if isinstance(value, tuple(classes)):
            return name
    raise ValueError(f"no case of the variant holds {value!r}")


class Policy:
    """One instance of a policy component, in its own store."""

    def __init__(self, engine, path):
        self.store = Store(engine)
        component = Component.from_file(engine, path)
        instance = Linker(engine).instantiate(self.store, component)
        iface = instance.get_export_index(self.store, POLICY)
        if iface is None:
            raise SystemExit(f"error: {path} does not export {POLICY}")
        self.funcs = {}
        for name in ("configure", "on-request", "on-outcome"):
            index = instance.get_export_index(self.store, name, iface)
            func = instance.get_func(self.store, index)
            self.funcs[name] = (func, func.type(self.store))

    def call(self, name, *args):
        func, ty = self.funcs[name]
        params = [lower(a, t) for a, (_, t) in zip(args, ty.params)]
        result = func(self.store, *params)
        func.post_return(self.store)
        return result, ty.result

    def configure(self, config):
        result, ty = self.call("configure", config)
        assert isinstance(ty, ResultType)
        return result  # None on success, else the config-error record

    def decide(self, name, *args):
        result, ty = self.call(name, *args)
        return lift(result, ty)


def main(argv):
    if len(argv) < 3 or any("=" not in a for a in argv[2:]):
        print("usage: python vectors.py VECTORS.json NAME=FILE.wasm...", file=sys.stderr)
        return 2
    engine = Engine()
    policies = {}
    for spec in argv[2:]:
        name, path = spec.split("=", 1)
        policies[name] = Policy(engine, path)
    with open(argv[1], encoding="utf-8") as f:
        doc = json.load(f)
    agree, differ = 0, []
    for s, suite in enumerate(doc["suites"]):
        policy = policies.get(suite["policy"])
        if policy is None:
            print(f"error: no component given for policy `{suite['policy']}`", file=sys.stderr)
            return 2
        refused = policy.configure(suite["config"])
        if refused is not None:
            print(f"error: suite {s}: config refused: {refused.key}: {refused.message}",
                  file=sys.stderr)
            return 2
        for i, v in enumerate(suite["vectors"]):
            answers = {
                "on-request": policy.decide("on-request", v["req"], v["view"]),
                "on-outcome": policy.decide(
                    "on-outcome", v["req"], v["order"], v["attempt"], v["view"]),
            }
            for call, got in answers.items():
                if got == v[call]:
                    agree += 1
                else:
                    differ.append(f"suite {s} ({suite['policy']}) vector {i} {call}:\n"
                                  f"  want {json.dumps(v[call], sort_keys=True)}\n"
                                  f"  got  {json.dumps(got, sort_keys=True)}")
        print(f"suite {s}: {suite['policy']} {json.dumps(suite['config'])}: "
              f"{len(suite['vectors'])} vectors")
    for d in differ[:10]:
        print(d)
    print(f"python wasmtime {version('wasmtime')}: {agree} answers agree, {len(differ)} differ")
    return 0 if not differ and agree > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
