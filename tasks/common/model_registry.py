"""MLflow models and the model registry: log a pyfunc into a run, register it, fetch `models:/` URIs.

Models are "models from code" (MLflow runs a small file that builds the `PythonModel`), so loading
one unpickles nothing but the fitted state the domain saved itself. `pip_requirements` are exact
pins of what is installed here: inferring them imports the model in a subprocess, slow and offline
unreliable. A `models:/NAME/VERSION`, `models:/NAME/latest` or `models:/NAME@alias` is downloaded
once into `.cache/mlflow-models/NAME/VERSION/` at the project root, atomically, and fetched again
only when that version's artifacts moved (another store, a re-created model).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

from tasks.common.errors import InputError
from tasks.common.paths import project_root
from tasks.common.tracking import client as _client
from tasks.common.tracking import home_checkout, tracking_uri

PREFIX = "models:/"
STAMP = ".seedflow-source.json"  # what a cache folder was downloaded from


class RegistryError(InputError):
    """A `models:/` URI that names no registered model version."""


def is_model_uri(ref: str | Path) -> bool:
    return isinstance(ref, str) and ref.startswith(PREFIX)


def pins(*distributions: str) -> list[str]:
    """`name==version` of installed distributions (local tags such as +cpu dropped: pip cannot find them)."""
    return [f"{name}=={version(name).split('+')[0]}" for name in distributions]


@contextmanager
def _quiet() -> Iterator[None]:
    """No artifact progress bars (they flood Prefect and Ray logs with carriage returns), and no advice
    to add an input example or type hints: the signature is given, and an example would load the model."""
    before = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*(input example was not provided|Add type hints)")
            yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = before


def log_pyfunc(run_id: str, code: Path, artifacts: dict[str, str], signature, requirements: list[str],
               config: dict[str, Any] | None = None, tags: dict[str, str] | None = None):
    """Log the pyfunc built by the file `code` into run `run_id` (no active run needed); its ModelInfo."""
    import mlflow.pyfunc
    from mlflow.models import Model

    with _quiet():
        return Model.log(artifact_path=None, name="model", flavor=mlflow.pyfunc, run_id=run_id, python_model=str(code),
                         artifacts=artifacts, signature=signature, pip_requirements=requirements,
                         model_config=config, tags=tags)


def register(model_info, name: str, tags: dict[str, str]):
    """A new version of registered model `name` (created on first use) for a logged model."""
    import mlflow

    return mlflow.register_model(model_info.model_uri, name, tags={k: str(v) for k, v in tags.items()})


def parse(uri: str) -> tuple[str, str, str | None]:
    """(name, version or "latest", alias) of `models:/NAME/VERSION`, `models:/NAME/latest`, `models:/NAME@alias`."""
    rest = uri[len(PREFIX):].strip("/")
    if "@" in rest and "/" not in rest:
        name, alias = rest.split("@", 1)
        return name, "", alias
    name, _, ref = rest.rpartition("/")
    if not name or not (ref.isdigit() or ref == "latest"):
        raise RegistryError(f"{uri} is not a registered model URI; write models:/NAME/VERSION, models:/NAME/latest "
                            "or models:/NAME@alias")
    return name, ref, None


def model_version(uri: str):
    """The registered ModelVersion a `models:/` URI names; a missing one says what exists."""
    from mlflow.exceptions import MlflowException

    name, ref, alias = parse(uri)
    client = _client()
    try:
        if alias:
            return client.get_model_version_by_alias(name, alias)
        if ref == "latest":
            versions = client.search_model_versions(f"name = '{name}'")
            if versions:
                return max(versions, key=lambda v: int(v.version))
        else:
            return client.get_model_version(name, ref)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):  # a store that fails
            raise
    raise RegistryError(f"{uri} does not exist in the MLflow registry {tracking_uri()}: {_what_exists(client, name)}")


def _what_exists(client, name: str) -> str:
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    if versions:
        aliases = sorted(client.get_registered_model(name).aliases)
        shown = ", ".join(map(str, versions[-10:]))
        return (f"{name} has version(s) {shown}" + (f" and alias(es) {', '.join(aliases)}" if aliases else "")
                + "; use one of those")
    names = sorted(m.name for m in client.search_registered_models())
    return f"no registered model {name!r}; registered: {', '.join(names) or 'none'} (check the name and MLFLOW_TRACKING_URI)"


def cache_root() -> Path:
    """Downloaded registry models, at the root of the checkout (shared with its `dvc exp` copies)."""
    return home_checkout(project_root()) / ".cache" / "mlflow-models"


def download(uri: str, finish: Callable[[Path, Path], None] | None = None) -> Path:
    """The local folder of the model version `uri` names, downloaded on first use.

    `finish(tmp, final)` adapts a fresh download in its temporary folder (paths inside it must
    point at `final`, where it is renamed once complete)."""
    from mlflow.artifacts import download_artifacts

    mv = model_version(uri)
    source = _client().get_model_version_download_uri(mv.name, mv.version)
    stamp = {"name": mv.name, "version": str(mv.version), "source": source}
    final = cache_root() / mv.name / str(mv.version)
    if _stamp(final) == stamp:
        return final
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir(parents=True)
    try:
        with _quiet():
            download_artifacts(artifact_uri=source, dst_path=str(tmp))
        if finish:
            finish(tmp, final)
        (tmp / STAMP).write_text(json.dumps(stamp))
        _replace(tmp, final, stamp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def model_root(folder: Path) -> Path:
    """The folder holding the MLmodel file inside a download (the artifact repository adds a level)."""
    found = sorted(folder.rglob("MLmodel"), key=lambda p: len(p.parts))
    if not found:
        raise RegistryError(f"{folder} holds no MLflow model (no MLmodel file); delete it to download again")
    return found[0].parent


def _stamp(folder: Path) -> dict | None:
    try:
        return json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return None


def _replace(tmp: Path, final: Path, stamp: dict) -> None:
    """Move a complete download into place; a concurrent download of the same version may win."""
    if final.exists() and _stamp(final) != stamp:
        shutil.rmtree(final)
    try:
        tmp.rename(final)
    except OSError:
        if _stamp(final) != stamp:
            raise
