"""Verified ground truth, part 1: a verification project from a stratified sample.

Folder labels (every Kvasir v2 / HyperKvasir label comes from the image's class folder)
cannot test whether a multi-label model sees findings the folder does not name. A
verification project asks annotators, independently, about every label of the taxonomy:

* each label is an explicit, required yes/no question (an unticked box is not a "no");
* box classes are drawn as boxes (axis-aligned, as on the main page);
* nothing is pre-filled: no model predictions, no current labels, no source class in the task
  data (anchoring would make the agreement meaningless);
* each task gets ``annotators`` (>= 2) annotations through Label Studio's overlap settings
  (``maximum_annotations`` = annotators, ``overlap_cohort_percentage`` = 100, overlapping tasks
  shown first).

The sample is stratified by source class (or, without one, by label set) over the test (and
optionally val) images of a split file, the same number per stratum where the strata allow,
deterministic per seed. ``verify_pull.py`` measures the agreement and writes the verified
labels as a new canonical version.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence
from xml.sax.saxutils import quoteattr

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.labelstudio.client import LabelStudioError, LSClient
from kvasir_ml.labelstudio.labeling_config import (
    _BOX_COLOURS, BOXES_NAME, GROUP_TITLES, IMAGE_NAME, REGION_TITLES,
)
from kvasir_ml.labelstudio.convert import ConvertError, image_key_from_task_data, image_url, safe_relative_path
from kvasir_ml.taxonomy import Taxonomy, load_taxonomy

QUESTION_PREFIX = "has-"  # <Choices name="has-<label>">: one yes/no question per taxonomy label
YES, NO = "yes", "no"
MIN_ANNOTATORS = 2


def question_name(label: str) -> str:
    """The control name of a label's yes/no question (the contract with ``verify_pull``)."""
    return f"{QUESTION_PREFIX}{label}"


# ---- labeling config ------------------------------------------------------------------------
OPEN_KEY = "open"  # adjudication task data: what the annotators disagreed on


def verification_config_xml(taxonomy: Taxonomy | None = None, adjudication: bool = False) -> str:
    """The verification page, generated from the taxonomy: the image, the box tool and one
    required yes/no question per label, grouped like the main page (region, then group).
    ``adjudication`` adds a line naming what the annotators disagreed on (task data ``open``).

    Deterministic (same taxonomy, same bytes). No hotkeys: 2 x 17 answers have no mnemonic
    keys, and a stray key press must not answer a question.
    """
    taxonomy = taxonomy or load_taxonomy()
    lines = [
        f"<!-- Verification page generated from annotations/taxonomy.yaml (version {taxonomy.version}) by "
        "kvasir_ml.labelstudio.verify. Do not edit by hand. -->",
        "<View>",
        '  <View style="display: flex; align-items: flex-start">',
        '    <View style="flex: 1 1 auto; min-width: 0">',
        f'      <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}" zoom="true" zoomControl="true" '
        'maxHeight="calc(100vh - 150px)"/>',
        "    </View>",
        '    <View style="flex: 0 0 470px; padding-left: 12px">',
        *(['      <Header value="Adjudication: the annotators disagreed on" size="5"/>',
           f'      <Text name="{OPEN_KEY}" value="${OPEN_KEY}"/>'] if adjudication else []),
        '      <Header value="Draw a box around every finding of these classes (none: draw nothing)" size="5"/>',
        f'      <RectangleLabels name="{BOXES_NAME}" toName="{IMAGE_NAME}" canRotate="false" strokeWidth="2" '
        'showInline="true">',
    ]
    for i, box in enumerate(taxonomy.box_classes):
        lines.append(f"        <Label value={quoteattr(box.name)} background={quoteattr(_BOX_COLOURS[i % len(_BOX_COLOURS)])} "
                     f"hint={quoteattr(box.description)}/>")
    lines += ["      </RectangleLabels>",
              '      <Header value="Answer every question: is it in this image?" size="5"/>']
    for region in dict.fromkeys(label.region for label in taxonomy.labels):
        for group in dict.fromkeys(label.group for label in taxonomy.labels):
            members = [lab for lab in taxonomy.labels if (lab.region, lab.group) == (region, group)]
            if not members:
                continue
            title = f"{GROUP_TITLES.get(group, group)} ({REGION_TITLES.get(region, region)})"
            lines.append(f'      <Header value={quoteattr(title)} size="6"/>')
            for label in members:
                lines += [
                    '      <View style="display: flex; gap: 8px; align-items: center">',
                    f'        <Header value={quoteattr(f"{label.name}: {label.description}")} size="6"/>',
                    f"        <Choices name={quoteattr(question_name(label.name))} toName=\"{IMAGE_NAME}\" "
                    f'choice="single-radio" showInline="true" required="true" '
                    f"requiredMessage={quoteattr(f'Answer yes or no: {label.name}')}>",
                    f'          <Choice value="{YES}"/>',
                    f'          <Choice value="{NO}"/>',
                    "        </Choices>",
                    "      </View>",
                ]
    lines += ["    </View>", "  </View>", "</View>", ""]
    return "\n".join(lines)


# ---- sample ------------------------------------------------------------------------------------
def stratum_of(img: dict[str, Any]) -> str:
    """The stratum of an image: ``source/source_class``, else its label set."""
    if img.get("source_class"):
        return f"{img.get('source') or '?'}/{img['source_class']}"
    labels = ",".join(sorted(img.get("labels") or []))
    return f"labels:{labels or 'none'}"


def stratified_sample(images: Sequence[dict[str, Any]], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` images (all when fewer), spread as evenly over the strata as their sizes allow.

    Strata are filled round-robin from per-stratum shuffles, so a small class is taken whole
    before a large one gets more; the result is deterministic per seed and listed by
    stratum, then file name.
    """
    rng = random.Random(seed)
    strata: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for img in sorted(images, key=lambda i: i["file_name"]):
        strata[stratum_of(img)].append(img)
    queues = {key: rng.sample(members, len(members)) for key, members in sorted(strata.items())}
    chosen: list[dict[str, Any]] = []
    while len(chosen) < n and any(queues.values()):
        for key in sorted(queues):
            if queues[key] and len(chosen) < n:
                chosen.append(queues[key].pop())
    return sorted(chosen, key=lambda i: (stratum_of(i), i["file_name"]))


def sample_from_split(dataset: CanonicalDataset, split: Any, n: int, splits: Sequence[str] = ("test",),
                      seed: int = 0) -> list[dict[str, Any]]:
    """The stratified sample of the images in ``splits`` of a ``data.splits.Split``.

    Raises:
        ValueError: a split name the file lacks, or a split naming images the canonical file lacks.
    """
    by_file = dataset.image_by_file
    names: list[str] = []
    for name in splits:
        if name not in split.splits:
            raise ValueError(f"the split file has no {name!r} split (it has {sorted(split.splits)})")
        names += split.splits[name]
    missing = [f for f in names if f not in by_file]
    if missing:
        raise ValueError(f"the split names {len(missing)} images absent from the canonical file, e.g. {missing[:3]}")
    return stratified_sample([by_file[f] for f in names], n, seed)


# ---- project -------------------------------------------------------------------------------------
@dataclass
class CreateReport:
    project_id: int
    created_project: bool
    n_sampled: int
    n_tasks_created: int = 0
    n_tasks_existing: int = 0
    strata: dict[str, int] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        head = (f"verification project {self.project_id} ({'created' if self.created_project else 'reused'}): "
                f"{self.n_sampled} images sampled; tasks created {self.n_tasks_created}, already there "
                f"{self.n_tasks_existing}")
        return [head] + [f"  {k}: {v}" for k, v in sorted(self.strata.items())]


def overlap_settings(annotators: int) -> dict[str, Any]:
    """The project settings that give every task ``annotators`` independent annotations."""
    if annotators < MIN_ANNOTATORS:
        raise ValueError(f"a verification needs at least {MIN_ANNOTATORS} annotators per task, got {annotators}")
    return {"maximum_annotations": int(annotators), "overlap_cohort_percentage": 100, "show_overlap_first": True,
            "show_collab_predictions": False, "show_annotation_history": False}


def create_verification_project(client: LSClient, images: Sequence[dict[str, Any]], data_root: str | Path,
                                project: str, annotators: int = 2, description: str = "",
                                taxonomy: Taxonomy | None = None) -> CreateReport:
    """Create (or reuse, by title) the verification project and add the sampled images.

    Tasks carry only the image (its local-files URL): no labels, no class, no predictions.
    Re-running adds only images without a task. A project created here whose images the
    server cannot show is deleted again (no empty project is left behind).

    Raises:
        LabelStudioError: the server cannot serve the images, or a reused project has another config.
    """
    keys = [safe_relative_path(img["file_name"], "canonical file_name") for img in images]
    pid, created = ensure_labeling_project(client, project, verification_config_xml(taxonomy),
                                           overlap_settings(annotators), data_root, keys, description)
    report = CreateReport(project_id=pid, created_project=created, n_sampled=len(images))
    for img in images:
        report.strata[stratum_of(img)] = report.strata.get(stratum_of(img), 0) + 1
    report.n_tasks_created = import_missing_tasks(client, pid, {k: {IMAGE_NAME: image_url(k)} for k in keys})
    report.n_tasks_existing = len(keys) - report.n_tasks_created
    return report


def ensure_labeling_project(client: LSClient, project: str, config: str, settings: dict[str, Any],
                            data_root: str | Path, keys: Sequence[str], description: str = "") -> tuple[int, bool]:
    """Create the project (or reuse one with this exact config), set ``settings``, and make
    sure the server can show the images. Returns ``(project id, created here)``.

    Raises:
        LabelStudioError: a project of that title has another config, or the images are not
            served (a project created here is then deleted again).
    """
    from kvasir_ml.labelstudio.sync import check_image_served, ensure_local_storage, find_project

    data_root = Path(data_root).resolve()
    pid = find_project(client, project)
    created = pid is None
    if pid is None:
        made = client.call(f"create project {project!r}", client.sdk.projects.create, idempotent=False,
                           title=project, label_config=config, description=description, **settings)
        pid = int(made.id)
    else:
        current = client.call(f"get project {pid}", client.sdk.projects.get, id=pid)
        if (current.label_config or "").strip() != config.strip():
            raise LabelStudioError(f"project {project!r} ({pid}) exists with another labeling config; it is not "
                                   "a project of this workflow and taxonomy: choose another --project title")
        client.call(f"update the settings of project {pid}", client.sdk.projects.update, id=pid, **settings)
    try:
        ensure_local_storage(client, pid, data_root, keys)
        if keys:
            check_image_served(client, data_root, keys[0])
    except (LabelStudioError, ValueError):
        if created:
            client.call(f"delete project {pid}", client.sdk.projects.delete, id=pid)
        raise
    return pid, created


def import_missing_tasks(client: LSClient, project_id: int, data_by_key: dict[str, dict[str, Any]]) -> int:
    """Import a task for each image key the project has no task for; returns how many."""
    existing = set()
    for task in client.list_tasks(project_id):
        try:
            existing.add(image_key_from_task_data(task["data"]))
        except ConvertError:
            continue
    new = [{"data": data} for key, data in data_by_key.items() if key not in existing]
    if new:
        client.call(f"import {len(new)} tasks into project {project_id}", client.sdk.projects.import_tasks,
                    idempotent=False, id=project_id, request=new, return_task_ids=True)
    return len(new)
