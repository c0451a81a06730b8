"""The prolific-offender picture: unknown repeat offenders, appearances, cold-case re-search.

* **Unknown faces.** A usable probe face with no candidate above the pack's threshold (or one whose
  review ``no_match`` is confirmed) is an unknown. The worker links it, in the transaction that
  stores it, to the unknown faces already held (``service.domain.linking``: incremental and
  conservative); each unknown belongs to one ``unknown_groups`` row (a group of one is a singleton).
* **In memory.** Every process holds the unknown faces of its pack in an ``UnknownFaceIndex``,
  loaded from the database on first use. Every change to the groups replaces
  ``linking_state.version`` with a random stamp in the same transaction; a process whose stamp
  differs reconciles (drops faces gone, loads faces new, re-reads every face's group) before it
  links. Changes take the ``linking_state`` row lock first, so linkers are serialised across
  processes on SQLite and PostgreSQL alike; a rolled-back change leaves a stamp that no longer
  matches, so the next use reconciles.
* **Reviewers** confirm, split and merge groups (``group_decisions`` + the audit trail); automatic
  linking never merges a group a reviewer has decided on.
* **Cold case.** When a custody image is enrolled, the unknown faces from the retention window are
  scored against the new template (one dot product each); a face at or above the pack's threshold
  gets a new candidate and, if it had been decided, is reopened (a recorded decision) so that it
  enters the review queue.
* **Appearances.** A confirmed ``possible_match`` links a probe face (retailer, store, incident,
  capture time) to a subject; a group member links it to an unknown group. The prolific view ranks
  both by distinct incidents, retailers and stores in a period and area.

The package, along those seams (``LinkingService`` is the one facade the rest of the service uses):

* ``held`` — the in-memory index, the lock and the stamp: every change is ``with held.changing(session)``
  (lock → sync → the change → new stamp; an error marks the index stale).
* ``auto`` — automatic linking of the worker's unmatched faces, auto merges, and the review
  subscriber (``ReviewDecided``: a confirmed no-match joins, a confirmed match leaves).
* ``cold_case`` — re-search of the unknown faces on enrolment (``TemplateEnrolled``).
* ``decisions`` — reviewers' confirm, split and merge.
* ``views`` — the read side: groups, a subject's appearances, the prolific ranking.
* ``purge`` — retention's hooks.
"""

from service.services.linking.auto import LINKER
from service.services.linking.decisions import GroupConflict
from service.services.linking.service import LinkingService
from service.services.linking.views import cohesion, incident_key

__all__ = ["LINKER", "GroupConflict", "LinkingService", "cohesion", "incident_key"]
