"""The anchors new measurements are taken beside (`search/services/anchors.py`), on a real SQLite
file: subnets measured before on the same target and space, near the new ones in size."""

from __future__ import annotations

import numpy as np

from hwnas.db.models import Measurement, Run
from hwnas.db.models import Target as TargetRow
from hwnas.db.queries import ensure_space
from hwnas.db.session import open_db
from hwnas.latency.drift import FEW_ANCHORS as ANCHORS
from hwnas.latency.targets import Target
from hwnas.search.services.anchors import anchors
from hwnas.supernet.space import load_space

CPU = Target("cpu")


def _measured(db, space, subnets, ms, first: int = 0) -> None:
    """Measurements of `subnets` on `cpu` (the run and target made where missing)."""
    with db.write() as s:
        run = s.query(Run).filter_by(name=space.name).one_or_none()
        target = s.query(TargetRow).filter_by(key=CPU.key).one_or_none()
        if run is None:
            run = Run(name=space.name, dataset="digits", space=space.to_dict(), config={})
            s.add(run)
        if target is None:
            target = TargetRow(key=CPU.key, name=CPU.key, settings={}, fingerprint={})
            s.add(target)
        ensure_space(s, space.key, space.name, space.to_dict())
        s.flush()
        for i, (sub, t) in enumerate(zip(subnets, ms, strict=True)):
            s.add(Measurement(target_id=target.id, run_id=run.id, subnet_key=sub.key,
                              subnet=sub.to_dict(), space_key=space.key, median_ms=t, cv=0.1,
                              iqr_ms=0.1, n_reps=20, fingerprint={},
                              source=f"job:{first + i}"))  # fmt: skip


def test_a_front_is_anchored_by_measured_subnets_of_its_size(sqlite_url):
    space = load_space("digits")
    rng = np.random.default_rng(0)
    pool = list({s.key: s for s in (space.sample(rng) for _ in range(30))}.values())
    ms = [1.0 + i for i in range(len(pool))]
    with open_db(sqlite_url) as db:
        _measured(db, space, pool, ms)
        front = [space.smallest(), pool[3]]
        refs, stored = anchors(db, space, CPU, front, ANCHORS)
    assert len(refs) == ANCHORS and len({r.key for r in refs}) == ANCHORS
    assert pool[3].key not in {r.key for r in refs}  # a front subnet is not its own anchor
    assert stored == [ms[[p.key for p in pool].index(r.key)] for r in refs]
    others = [p for p in pool if p.key not in {f.key for f in front}]

    def distance(sub, macs: int) -> float:
        return abs(float(np.log(space.cost(sub).macs / macs)))

    for f in front:  # the front's smallest and largest: the nearest measured subnet in MACs
        macs = space.cost(f).macs
        assert min(distance(r, macs) for r in refs) == min(distance(o, macs) for o in others)


def test_a_target_measured_for_the_first_time_has_no_anchors(sqlite_url):
    space = load_space("digits")
    with open_db(sqlite_url) as db:
        assert anchors(db, space, CPU, [space.smallest()], ANCHORS) == ([], [])


def test_anchors_come_from_the_fronts_space_only_and_may_be_fewer(sqlite_url):
    digits, cifar = load_space("digits"), load_space("cifar")
    rng = np.random.default_rng(1)
    with open_db(sqlite_url) as db:
        _measured(db, cifar, [cifar.sample(rng) for _ in range(6)], [5.0] * 6)
        two = [digits.sample(rng), digits.sample(rng)]
        _measured(db, digits, two, [1.0, 2.0], first=100)
        refs, stored = anchors(db, digits, CPU, [digits.smallest()], ANCHORS)
    assert {r.key for r in refs} == {t.key for t in two} and sorted(stored) == [1.0, 2.0]
