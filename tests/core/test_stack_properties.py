"""Property tests: every stack spec, stack dict or stack YAML either parses or raises StackError - nothing else."""
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memfit import Stack, StackError, available_strategies

NAMES = sorted(available_strategies())
PIECE = st.one_of(st.sampled_from(NAMES), st.sampled_from(NAMES).map(lambda n: n + "8"),
                  st.text(alphabet=string.ascii_lowercase + string.digits + ":=,._-+ ", max_size=12),
                  st.builds(lambda n, k, v: f"{n}:{k}={v}", st.sampled_from(NAMES),
                            st.sampled_from(["r", "alpha", "effective_batch", "steps", "dtype", "bogus", ""]),
                            st.text(alphabet=string.printable, max_size=6)))
SPEC = st.one_of(st.lists(PIECE, max_size=5).map("+".join), st.text(max_size=30))
JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                    max_size=3), max_leaves=8)


def _parses_or_stack_error(build):
    try:
        stack = build()
    except StackError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
        return
    assert isinstance(stack, Stack)
    assert Stack.from_spec(stack.spec).key == stack.key  # a parsed stack round-trips through its spec


@settings(max_examples=200, deadline=None)
@given(SPEC)
def test_any_spec_parses_or_raises_stack_error(spec):
    _parses_or_stack_error(lambda: Stack.from_spec(spec))


@settings(max_examples=200, deadline=None)
@given(st.one_of(JSONISH, st.lists(st.one_of(st.sampled_from(NAMES), st.dictionaries(
    st.sampled_from(["name", "r", "alpha", "steps", "effective_batch", "x"]), JSONISH, max_size=3)), max_size=3)))
def test_any_stack_dict_parses_or_raises_stack_error(data):
    if not isinstance(data, (dict, list)):
        data = {"strategies": data}
    _parses_or_stack_error(lambda: Stack.from_dict(data))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=80))
def test_any_stack_yaml_parses_or_raises_stack_error(tmp_path, text):
    path = tmp_path / "stack.yaml"
    path.write_text(text)
    _parses_or_stack_error(lambda: Stack.from_yaml(path))
