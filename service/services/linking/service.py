"""``LinkingService``: the one facade over the package's parts, sharing one ``HeldFaces``."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from service.config import LinkingSettings, Settings
from service.domain.linking import LinkRule
from service.embeddings.packs import PackManifest
from service.services.linking.auto import AutoLinker
from service.services.linking.cold_case import ColdCase
from service.services.linking.decisions import GroupDecisions
from service.services.linking.held import HeldFaces
from service.services.linking.purge import PurgeHooks
from service.services.linking.views import ProlificViews


class LinkingService:
    """Unknown faces of one pack: the worker's, review's, gallery's and retention's hooks, reviewers'
    decisions on groups, and the prolific views. Each method is its part's (see the package docstring)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        pack_id: str,
        dim: int,
        settings: LinkingSettings,
        match_threshold: float,
        retention_days: float,
    ) -> None:
        self.factory = factory
        self.pack_id = pack_id
        self.enabled = settings.enabled
        self.rule = LinkRule(settings.threshold, settings.nearest, settings.margin, settings.merge_threshold)
        self.held = HeldFaces(pack_id, dim)
        self.index = self.held.index
        self.auto = AutoLinker(self.held, self.rule, enabled=self.enabled)
        self.cold = ColdCase(
            factory, self.held, enabled=self.enabled, match_threshold=match_threshold, retention_days=retention_days
        )
        self.decisions = GroupDecisions(factory, self.held)
        self.views = ProlificViews(factory, pack_id)
        self.purge = PurgeHooks(self.held)
        # the worker's and review's hooks (inside their transactions), the gallery's after an enrolment
        self.link_new_faces = self.auto.link_new_faces
        # the linking lock, for a transaction that may link after it audits (the lock precedes the chain's)
        self.lock = self.held.lock
        self.review_decided = self.auto.review_decided
        self.template_enrolled = self.cold.template_enrolled
        # retention's hooks around the purge's deletes
        self.purge_begin = self.purge.purge_begin
        self.purge_end = self.purge.purge_end
        # reviewers' decisions on groups
        self.confirm = self.decisions.confirm
        self.split = self.decisions.split
        self.merge = self.decisions.merge
        # the read side (recorded views)
        self.list_groups = self.views.list_groups
        self.group = self.views.group
        self.subject_appearances = self.views.subject_appearances
        self.prolific = self.views.prolific

    @classmethod
    def from_settings(
        cls, settings: Settings, factory: sessionmaker[Session], manifest: PackManifest
    ) -> LinkingService:
        return cls(
            factory,
            manifest.id,
            manifest.embedding_dim,
            settings.linking,
            manifest.operating_threshold,
            settings.retention.days,
        )
