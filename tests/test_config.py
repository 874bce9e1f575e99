import re
from pathlib import Path

import pytest
import yaml
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from hydra_plugins.svhn_sweep_optuna.config import PersistentOptunaSweeperConf
from svhn_sweep.constants import DEFAULT_STORAGE
from svhn_sweep.sweep.config import CONFIG_DIR, GROUP_OPTIONS, TrainConfig, validate
from tests.conftest import REPO

CONF = Path(CONFIG_DIR)


def test_default_config_is_the_notebook_model(compose_cfg) -> None:
    cfg = compose_cfg()
    validate(cfg)
    assert cfg.data.root == "data/svhn" and cfg.data.val_fraction == 0.2
    assert list(cfg.data.mean) == [0.43, 0.44, 0.47] and list(cfg.data.std) == [0.2, 0.2, 0.2]
    assert list(cfg.model.hidden_sizes) == [100] and cfg.model.batchnorm == "none"
    assert cfg.scheduler.step_size == 2 and cfg.scheduler.gamma == 0.5


@pytest.mark.parametrize("choice", ["sgd", "adam", "adamw"])
def test_every_optimizer_option_has_lr_and_weight_decay(compose_cfg, choice: str) -> None:
    cfg = compose_cfg(f"optimizer={choice}", "optimizer.lr=0.5", "optimizer.weight_decay=0.1")
    validate(cfg)
    assert cfg.optimizer.lr == 0.5 and cfg.optimizer.weight_decay == 0.1


def test_scheduler_none_means_no_scheduler(compose_cfg) -> None:
    assert compose_cfg("scheduler=none").scheduler is None
    assert compose_cfg("scheduler=cosine", "trainer.epochs=7").scheduler.T_max == 7


@pytest.mark.parametrize(
    ("override", "key", "hint"),
    [
        ("optimizer.lr=-0.1", "optimizer.lr=-0.1", "positive"),
        ("data.val_fraction=1.5", "data.val_fraction=1.5", "between 0 and 1"),
        ("model.hidden_sizes=[]", "model.hidden_sizes=[]", "at least one layer"),
        ("model.hidden_sizes=[100,0]", "model.hidden_sizes=[100, 0]", "positive"),
        ("trainer.epochs=0", "trainer.epochs=0", ">= 1"),
        ("model.dropout=1.0", "model.dropout=1.0", "[0, 1)"),
    ],
)
def test_impossible_values_are_rejected_naming_key_value_and_rule(compose_cfg, override, key, hint) -> None:
    with pytest.raises(ValueError) as error:
        validate(compose_cfg(override))
    assert key in str(error.value) and hint in str(error.value)


def test_unknown_enum_value_names_key_and_allowed_values(compose_cfg) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose_cfg("model.batchnorm=sideways")
    message = str(error.value.__cause__)
    assert "sideways" in message and "none, before, after" in message and "model.batchnorm" in message


def test_typo_in_a_key_or_group_option_is_rejected(compose_cfg) -> None:
    with pytest.raises(ConfigCompositionException, match="trainer.epoch"):
        compose_cfg("trainer.epoch=3")
    with pytest.raises(MissingConfigException, match="resnet") as error:
        compose_cfg("model=resnet")
    assert "cnn" in str(error.value) and "mlp" in str(error.value)


def test_wrong_type_is_rejected(compose_cfg) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose_cfg("optimizer.lr=fast")
    assert isinstance(error.value.__cause__, ValidationError)
    assert "optimizer.lr" in str(error.value.__cause__)


@pytest.mark.parametrize(("amp", "compile_model"), [("auto", "false"), ("true", "true"), ("false", "false")])
def test_amp_and_compile_switches_accept_their_values(compose_cfg, amp: str, compile_model: str) -> None:
    cfg = compose_cfg(f"trainer.amp={amp}", f"trainer.compile={compile_model}")
    validate(cfg)
    assert cfg.trainer.amp == {"auto": "auto", "true": True, "false": False}[amp]
    assert cfg.trainer.compile is (compile_model == "true")


def test_cuda_graphs_switch_is_checked_against_the_device(compose_cfg) -> None:
    for value, expected in [("auto", "auto"), ("true", True), ("false", False)]:
        cfg = compose_cfg(f"trainer.cuda_graphs={value}", "trainer.device=cuda")
        validate(cfg)
        assert cfg.trainer.cuda_graphs == expected
    with pytest.raises(ValueError, match=r"trainer\.cuda_graphs='sometimes': must be auto, true or false"):
        validate(compose_cfg("trainer.cuda_graphs=sometimes"))
    with pytest.raises(ValueError, match=r"trainer\.cuda_graphs=True: CUDA graphs need trainer\.device=cuda"):
        validate(compose_cfg("trainer.cuda_graphs=true", "trainer.device=cpu"))


def test_amp_and_compile_switches_reject_other_values(compose_cfg) -> None:
    with pytest.raises(ValueError) as error:
        validate(compose_cfg("trainer.amp=bf16"))
    assert "trainer.amp='bf16'" in str(error.value) and "auto, true or false" in str(error.value)
    for override, key in [("trainer.amp=2", "trainer.amp"), ("trainer.compile=fast", "trainer.compile")]:
        with pytest.raises(ConfigCompositionException) as composition_error:
            compose_cfg(override)
        assert key in str(composition_error.value.__cause__)


def _package(path: Path) -> str:
    """Where a YAML file of ``conf/`` lands in the composed config: its ``# @package`` line, else its group."""
    header = re.search(r"^# @package (\S+)", path.read_text(), flags=re.M)
    if path.parent == CONF:  # the primary config
        return ""
    package = header.group(1) if header else ".".join(path.relative_to(CONF).parent.parts)
    return "" if package == "_global_" else package


def _leaves(node: object, prefix: str) -> dict[str, object]:
    if not isinstance(node, dict):
        return {prefix: node}
    return {
        key: value
        for k, v in node.items()
        if k != "defaults"
        for key, value in _leaves(v, f"{prefix}.{k}" if prefix else str(k)).items()
    }


def _schema_defaults() -> dict[str, object]:
    """Every default value a dataclass states, by its key in the composed config (group options included)."""
    schemas = {"": TrainConfig, "hydra.sweeper": PersistentOptunaSweeperConf}
    schemas.update({group: node for (group, _), node in GROUP_OPTIONS.items()})
    defaults: dict[str, object] = {}
    for prefix, schema in schemas.items():
        tree = OmegaConf.to_container(OmegaConf.structured(schema), resolve=False, enum_to_str=True)
        defaults.update({key: value for key, value in _leaves(tree, prefix).items() if value != "???"})
    return defaults


def test_no_yaml_in_conf_restates_a_default_of_a_schema() -> None:
    """Each default is stated once, in its dataclass: a YAML copy would drift (it did: epochs 10 against 4)."""
    defaults = _schema_defaults()
    assert defaults["trainer.epochs"] == 4 and defaults["hydra.sweeper.storage"] == DEFAULT_STORAGE  # the check sees
    files = sorted(CONF.rglob("*.yaml"))
    assert len(files) >= 8
    restated = {
        f"{path.relative_to(CONF)}: {key}": value
        for path in files
        for key, value in _leaves(yaml.safe_load(path.read_text()) or {}, _package(path)).items()
        if key in defaults and not (isinstance(value, str) and value.startswith("${"))
    }
    assert restated == {}


@pytest.mark.parametrize("literal", ["73257", "26032", "0.43, 0.44, 0.47", DEFAULT_STORAGE, "= 4096", "= 256\n"])
def test_shared_facts_are_written_once_in_the_code(literal: str) -> None:
    """SVHN's sizes, its normalisation, the default storage and batch sizes: one statement, imported elsewhere."""
    sources = [
        *REPO.glob("svhn_sweep/**/*.py"),
        *REPO.glob("hydra_plugins/**/*.py"),
        *REPO.glob("benchmarks/*.py"),
        *CONF.rglob("*.yaml"),
    ]
    holders = [str(path.relative_to(REPO)) for path in sources if literal in path.read_text()]
    assert len(holders) == 1, holders
