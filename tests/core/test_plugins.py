"""Third-party strategies plug in through the `memfit.strategies` entry-point group."""

from __future__ import annotations

import sys
import textwrap


from memfit import Stack
from memfit.core import registry


def test_plugin_distribution_on_sys_path_is_usable_by_name(tmp_path, monkeypatch):
    # A throwaway distribution: a module plus its dist-info with an entry point, exactly what pip would install.
    (tmp_path / "freeze_embeddings_plugin.py").write_text(textwrap.dedent('''
        from typing import ClassVar
        from pydantic import BaseModel
        from memfit.core.protocol import strategy_config

        class FreezeEmbeddings(BaseModel):
            model_config = strategy_config()
            name: ClassVar[str] = "freeze_embeddings"
            phase: ClassVar[int] = 35
            scale: float = 1.0

            def describe(self):
                return "freeze the input embeddings"

            def transform_model(self, model, ctx):
                model.get_input_embeddings().weight.requires_grad_(False)
                return model
    '''))
    dist = tmp_path / "freeze_embeddings_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: freeze-embeddings-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[memfit.strategies]\nfreeze_embeddings = freeze_embeddings_plugin:FreezeEmbeddings\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.reload_plugins()
    try:
        stack = Stack.from_spec("freeze_embeddings:scale=2+gc")
        assert stack.get("freeze_embeddings").scale == 2.0
        assert Stack.from_dict(["freeze_embeddings"]).spec == "freeze_embeddings"
        from _models import tiny_model

        model = stack.apply_model(tiny_model(), stack.context("cpu"))
        assert not model.get_input_embeddings().weight.requires_grad
        assert model.lm_head.weight.requires_grad
    finally:
        sys.modules.pop("freeze_embeddings_plugin", None)
        registry._REGISTRY.pop("freeze_embeddings", None)


def test_register_strategy_decorator_in_process():
    from typing import ClassVar

    from pydantic import BaseModel

    from memfit.core.protocol import strategy_config

    @registry.register_strategy(aliases=("noop2",))
    class Noop(BaseModel):
        model_config = strategy_config()
        name: ClassVar[str] = "noop"
        phase: ClassVar[int] = 90

        def describe(self):
            return "does nothing"

    try:
        assert Stack.from_spec("noop2").get("noop") == Noop()
    finally:
        registry._REGISTRY.pop("noop", None)
        registry._REGISTRY.pop("noop2", None)
