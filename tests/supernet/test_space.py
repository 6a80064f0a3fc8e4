from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.supernet.space import (
    SearchSpace,
    SpaceError,
    StageSpec,
    Subnet,
    default_space,
    load_space,
    presets,
)

SPACE = default_space()


@st.composite
def subnets(draw, space: SearchSpace = SPACE) -> Subnet:
    seed = draw(st.integers(0, 2**32 - 1))
    return space.sample(np.random.default_rng(seed))


def tiny_space() -> SearchSpace:
    return SearchSpace(
        name="tiny",
        stages=(StageSpec(8, 1), StageSpec(8, 2, se=True, act="hswish")),
        depths=(1, 2),
        kernels=(3, 5),
        expands=(2, 3),
        resolutions=(8, 10),
        stem_width=8,
        head_width=16,
    )


def test_default_space_loads_and_is_sized_for_a_cpu():
    assert SPACE.n_stages == 5
    assert SPACE.stages[0].width == 16
    assert max(s.width for s in SPACE.stages) <= 128
    assert SPACE.depths == (2, 3, 4) and SPACE.kernels == (3, 5, 7) and SPACE.expands == (3, 4, 6)
    assert all(8 <= r <= 32 for r in SPACE.resolutions)


def test_n_subnets_counts_distinct_keys_of_a_tiny_space():
    space = tiny_space()
    keys = set()
    ks, es = space.kernels, space.expands
    for r, d0, d1 in itertools.product(space.resolutions, space.depths, space.depths):
        for ch in itertools.product(itertools.product(ks, es), repeat=space.n_slots):
            kernels = [c[0] for c in ch]
            expands = [c[1] for c in ch]
            keys.add(space.subnet(r, (d0, d1), kernels, expands).key)
    assert len(keys) == space.n_subnets


@settings(max_examples=200, deadline=None)
@given(subnets())
def test_encode_has_fixed_length_and_round_trips(subnet):
    v = SPACE.encode(subnet)
    assert v.shape == (SPACE.encoding_size,)
    assert set(np.unique(v)) <= {0.0, 1.0}
    assert SPACE.decode(v) == subnet


@settings(max_examples=200, deadline=None)
@given(subnets())
def test_json_round_trip_and_key(subnet):
    text = subnet.to_json()
    back = SPACE.subnet_from_json(text)
    assert back == subnet and back.key == subnet.key and hash(back) == hash(subnet)
    assert json.loads(text) == subnet.to_dict()


@settings(max_examples=100, deadline=None)
@given(subnets(), st.integers(0, 2**31))
def test_skipped_slots_do_not_change_identity(subnet, seed):
    rng = np.random.default_rng(seed)
    kernels, expands = list(subnet.kernels), list(subnet.expands)
    for i, k in enumerate(kernels):
        if k == 0:  # a skipped slot: any legal value is ignored
            kernels[i] = int(rng.choice(SPACE.kernels))
            expands[i] = int(rng.choice(SPACE.expands))
    other = SPACE.subnet(subnet.resolution, subnet.depths, kernels, expands)
    assert other == subnet and other.key == subnet.key


def test_sampling_is_deterministic_for_a_seed():
    a = [SPACE.sample(np.random.default_rng((7, i))) for i in range(20)]
    b = [SPACE.sample(np.random.default_rng((7, i))) for i in range(20)]
    c = [SPACE.sample(np.random.default_rng((8, i))) for i in range(20)]
    assert a == b and a != c
    assert len({s.key for s in a}) == 20


def test_largest_and_smallest():
    big, small = SPACE.largest(), SPACE.smallest()
    assert big.resolution == max(SPACE.resolutions) and set(big.depths) == {4}
    assert set(big.kernels) == {7} and set(big.expands) == {6}
    assert small.resolution == min(SPACE.resolutions) and set(small.depths) == {2}
    assert SPACE.cost(big).params > SPACE.cost(small).params
    assert SPACE.cost(big).macs > SPACE.cost(small).macs


@settings(max_examples=50, deadline=None)
@given(subnets())
def test_costs_lie_between_smallest_and_largest(subnet):
    lo, hi, c = SPACE.cost(SPACE.smallest()), SPACE.cost(SPACE.largest()), SPACE.cost(subnet)
    assert lo.params <= c.params <= hi.params
    assert lo.macs <= c.macs <= hi.macs


def test_cost_of_a_tiny_subnet_by_hand():
    space = tiny_space()
    s = space.subnet(8, (1, 1), (3, 0, 5, 0), (2, 0, 3, 0))
    # stem 3x3x3->8 + BN
    params = 27 * 8 + 16
    macs = 64 * 27 * 8
    # stage 0: 8->16 expand, dw3, project 16->8, 8x8, no SE
    params += 8 * 16 + 32 + 9 * 16 + 32 + 16 * 8 + 16
    macs += 64 * 8 * 16 + 64 * 9 * 16 + 64 * 16 * 8
    # stage 1: 8->24 expand at 8x8, dw5 stride 2 -> 4x4, SE 24->8->24, project 24->8
    params += 8 * 24 + 48 + 25 * 24 + 48 + (24 * 8 + 8 + 8 * 24 + 24) + 24 * 8 + 16
    macs += 64 * 8 * 24 + 16 * 25 * 24 + 2 * 24 * 8 + 16 * 24 * 8
    # head: 1x1 8->16 + BN at 4x4, dense 16->10
    params += 8 * 16 + 32 + 16 * 10 + 10
    macs += 16 * 8 * 16 + 16 * 10
    assert space.cost(s).params == params and space.cost(s).macs == macs


ILLEGAL = [
    ({"resolution": 13}, "resolution 13"),
    ({"resolution": "16"}, "resolution must be an integer"),
    ({"depths": [4, 4, 4, 4]}, "depths"),
    ({"depths": [4, 4, 4, 4, 5]}, "depths"),
    ({"depths": [4, 4, 4, 4, 1]}, "depth 1 of stage 4"),
    ({"depths": [4, 4, 4, 4, 0]}, "depths"),
    ({"depths": [4, 4, 4, 4, 2.5]}, "integers"),
    ({"kernels": [4] + [7] * 19}, "slot 0"),
    ({"kernels": [7] * 19}, "kernels"),
    ({"expands": [5] + [6] * 19}, "slot 0"),
    ({"expands": [6] * 21}, "expands"),
    ({"expands": "6"}, "list"),
    ({"extra": 1}, "exactly the keys"),
]


@pytest.mark.parametrize("change,message", ILLEGAL)
def test_every_illegal_value_is_refused_with_a_clear_error(change, message):
    data = SPACE.largest().to_dict() | change
    with pytest.raises(SpaceError, match=message):
        SPACE.subnet_from_dict(data)


def test_active_kernel_zero_is_refused():
    kernels = [7] * 20
    kernels[1] = 0
    with pytest.raises(SpaceError, match="kernel 0 at slot 1"):
        SPACE.subnet(16, (4,) * 5, kernels, [6] * 20)


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"resolution": 16}'])
def test_bad_subnet_json_is_refused(text):
    with pytest.raises(SpaceError):
        SPACE.subnet_from_json(text)


def test_a_subnet_of_another_space_is_refused():
    other = tiny_space().largest()
    with pytest.raises(SpaceError, match="stages"):
        SPACE.validate(other)


def test_space_round_trips_through_json_and_toml(tmp_path):
    j = tmp_path / "s.json"
    j.write_text(SPACE.to_json())
    assert SearchSpace.from_file(j) == SPACE
    t = tmp_path / "s.toml"
    t.write_text(
        'name = "t"\ndepths = [1, 2]\nkernels = [3]\nexpands = [2]\nresolutions = [8]\n'
        '[[stages]]\nwidth = 8\nstride = 2\nse = true\nact = "hswish"\n'
    )
    space = SearchSpace.from_file(t)
    assert space.stages == (StageSpec(8, 2, True, "hswish"),) and space.n_subnets == 2


@pytest.mark.parametrize(
    "data,message",
    [
        ({"stages": []}, "at least one stage"),
        ({"stages": [{"width": 8}], "kernels": [4]}, "odd"),
        ({"stages": [{"width": 8}], "depths": []}, "non-empty"),
        ({"stages": [{"width": 8}], "depths": [2, 2]}, "distinct"),
        ({"stages": [{"width": 0}]}, "width"),
        ({"stages": [{"width": 8, "stride": 3}]}, "stride"),
        ({"stages": [{"width": 8, "act": "gelu"}]}, "act"),
        ({"stages": [{"width": 8, "colour": 1}]}, "bad stage"),
        ({"stages": [{"width": 8}], "wat": 1}, "unknown space keys"),
    ],
)
def test_bad_space_is_refused(data, message):
    with pytest.raises(SpaceError, match=message):
        SearchSpace.from_dict(data)


def test_bad_space_files(tmp_path):
    with pytest.raises(SpaceError, match="does not exist"):
        SearchSpace.from_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpaceError, match="cannot read"):
        SearchSpace.from_file(bad)


def test_sized_sampling_covers_the_ends_of_the_size_range():
    space, rng = default_space(), np.random.default_rng(0)
    uniform = np.array([space.cost(space.sample(rng)).macs for _ in range(2000)])
    lo, hi = np.quantile(uniform, [0.05, 0.95])
    sized = np.array([space.cost(space.sample_sized(rng)).macs for _ in range(400)])
    assert np.mean(sized < lo) > 0.2 and np.mean(sized > hi) > 0.2
    assert sized.min() < uniform.min()  # uniform sampling never came near the smallest
    for s in (space.sample_sized(rng) for _ in range(50)):
        space.validate(s)


# ---- presets --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "top", "macs_range"),
    [("digits", 16, (0.5e6, 10e6)), ("cifar", 32, (5e6, 80e6)), ("ofa-mbv3", 224, (30e6, 600e6))],
)
def test_presets_load_by_name(name, top, macs_range):
    space = load_space(name)
    assert space.resolutions[-1] == top
    lo, hi = macs_range
    assert lo < space.cost(space.smallest()).macs < space.cost(space.largest()).macs < hi
    assert load_space(str(presets()[name])) == space  # the same space from its file


def test_ofa_preset_has_once_for_alls_dimensions():
    space = load_space("ofa-mbv3")
    assert [s.width for s in space.stages] == [24, 40, 80, 112, 160]
    assert [s.stride for s in space.stages] == [2, 2, 2, 1, 2]
    assert [s.se for s in space.stages] == [False, True, False, True, True]
    assert [s.act for s in space.stages] == ["relu", "relu", "hswish", "hswish", "hswish"]
    assert (space.stem_width, space.stem_stride, space.head_width) == (16, 2, 1280)
    assert (space.depths, space.kernels, space.expands) == ((2, 3, 4), (3, 5, 7), (3, 4, 6))
    assert space.resolutions == (128, 160, 192, 224)
    largest = space.largest()
    assert 550e6 < space.cost(largest).macs < 600e6  # OFA's largest: about 595 M


def test_default_is_the_digits_preset():
    assert load_space(None) == load_space("digits") == default_space()


def test_an_unknown_space_name_is_refused_with_the_presets_named():
    with pytest.raises(SpaceError, match=r"unknown space 'nonsense'.*cifar, digits, ofa-mbv3"):
        load_space("nonsense")
