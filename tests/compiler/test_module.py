"""fj.Module (issue 24, item 1): variables by path in a stable order, module-made variables
named by their paths, the trainable filter, variables made on the first call inside
fj.compile, initial values drawn per seed, errors that name the user's line, and logical axis
rules mapped to mesh axes (the sharded part runs in a fresh process with 8 virtual CPU
devices: XLA reads the device count when jax starts)."""

from __future__ import annotations

import os
import textwrap

import jax
import jax.nn.initializers as jinit
import numpy as np
import pytest
from devices import run_on_eight_devices

import flowjit as fj

HERE = os.path.basename(__file__)


# Every random kernel here is (4, 4) and drawn with lecun_normal: jax compiles an initializer
# for each shape, a second apiece.
LECUN = fj.nn.initializers.lecun_normal()


class Block(fj.Module):
    def __init__(self, rng):
        self.attn = fj.nn.Dense(4, in_features=4, rng=rng)
        self.norm = fj.nn.LayerNorm(4)


class Net(fj.Module):
    """Every container a module may hold: a list of modules, a dict, a tuple, a variable
    shared by two attributes, and itself."""

    def __init__(self, rng):
        self.embed = fj.nn.Embedding(4, 4, embedding_init=LECUN, rng=rng)
        self.blocks = [Block(rng), Block(rng)]
        self.extras = {
            "scale": fj.Variable(np.ones(4, np.float32), name="my_scale"),
            "pair": (
                fj.Variable(np.zeros(2, np.float32), trainable=False, name="count"),
                fj.nn.Dense(4, in_features=4, use_bias=False, rng=rng),
            ),
        }
        self.tied = self.embed.embedding  # the same variable again
        self.me = self  # a module holding itself
        self.head = fj.nn.Dense(4, rng=rng)  # made on its first call


def test_paths_follow_attribute_order_and_a_variable_reached_twice_is_listed_once():
    net = Net(fj.random.Generator(0))
    paths = [
        "embed/embedding",
        "blocks/0/attn/kernel",
        "blocks/0/attn/bias",
        "blocks/0/norm/scale",
        "blocks/0/norm/bias",
        "blocks/1/attn/kernel",
        "blocks/1/attn/bias",
        "blocks/1/norm/scale",
        "blocks/1/norm/bias",
        "extras/scale",
        "extras/pair/0",
        "extras/pair/1/kernel",
    ]
    assert list(net.named_variables()) == paths
    assert net.variables == list(net.named_variables().values())
    assert list(Net(fj.random.Generator(0)).named_variables()) == paths  # stable
    assert list(net.named_modules()) == [
        "", "embed", "blocks/0", "blocks/0/attn", "blocks/0/norm", "blocks/1",
        "blocks/1/attn", "blocks/1/norm", "extras/pair/1", "head",
    ]  # fmt: skip
    assert net.submodules == list(net.named_modules().values())[1:]


def test_module_made_variables_take_their_paths_and_user_named_ones_keep_their_names():
    block = Block(fj.random.Generator(0))
    assert block.attn.kernel.name == "attn/kernel"  # named when the Dense was set in block
    net = Net(fj.random.Generator(0))
    names = {path: v.name for path, v in net.named_variables().items()}
    assert names["blocks/1/attn/kernel"] == "blocks/1/attn/kernel"
    assert names["extras/pair/1/kernel"] == "extras/pair/1/kernel"
    assert names["extras/scale"] == "my_scale" and names["extras/pair/0"] == "count"
    assert names["embed/embedding"] == "embed/embedding"  # not "tied", its second path
    assert net.blocks[1].attn.path == "blocks/1/attn" and net.path == ""  # not "me"
    net.blocks[0].owner = net  # a reference back up renames nothing
    assert net.path == "" and net.embed.embedding.name == "embed/embedding"
    assert list(net.named_variables()) == list(names)


def test_the_trainable_filter_keeps_the_order():
    net = Net(fj.random.Generator(0))
    frozen = net.blocks[0].norm.param("frozen", jinit.zeros, (4,), trainable=False)
    assert frozen.name == "blocks/0/norm/frozen"
    want = [v for v in net.variables if v.name not in ("count", "blocks/0/norm/frozen")]
    assert net.trainable_variables == want
    assert len(want) == len(net.variables) - 2


def test_a_layer_made_on_its_first_call_in_fj_compile_is_made_once():
    net = Net(fj.random.Generator(0))

    @fj.compile
    def f(x):
        return net.head(x)

    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    y = f(x)
    head = net.named_variables()
    assert [p for p in head if p.startswith("head")] == ["head/kernel", "head/bias"]
    assert net.head.kernel.name == "head/kernel"
    kernel = np.asarray(net.head.kernel)  # a concrete value, drawn once
    np.testing.assert_allclose(np.asarray(y), x @ kernel, rtol=1e-5, atol=1e-6)
    f(x)
    f(np.ones((3, 4), np.float32))  # a new signature: a retrace
    assert f.cache_info().traces == 2
    assert net.named_variables() == head
    np.testing.assert_array_equal(np.asarray(net.head.kernel), kernel)


def test_initial_values_are_fixed_by_the_seed_and_differ_across_layers():
    def kernels(seed):
        g = fj.random.Generator(seed)
        return [np.asarray(fj.nn.Dense(4, in_features=4, rng=g).kernel) for _ in range(2)]

    a, b = kernels(0)
    np.testing.assert_array_equal(kernels(0)[1], b)
    assert not np.allclose(a, b)  # two layers of one generator
    assert not np.allclose(kernels(1)[0], a)
    # an int seed: keys fold_in(PRNGKey(seed), n) for the n-th variable (KeyStream's contract)
    want = LECUN(jax.random.fold_in(jax.random.PRNGKey(7), 0), (4, 4))
    np.testing.assert_array_equal(np.asarray(fj.nn.Dense(4, in_features=4, rng=7).kernel), want)


def _raises_at_this_file(error, fn, match):
    with pytest.raises(error, match=match) as caught:
        fn()
    assert HERE in str(caught.value.loc) and HERE in str(caught.value), str(caught.value)


def test_errors_name_the_users_line():
    _raises_at_this_file(
        fj.ArgumentError, lambda: fj.nn.Dense(3, in_features=2), "needs rng=.*draws random values"
    )
    layer = fj.nn.Dense(3)
    _raises_at_this_file(
        fj.ArgumentError, lambda: fj.compile(layer)(np.ones((1, 2), np.float32)), "rng="
    )
    module = fj.Module()
    _raises_at_this_file(
        fj.ArgumentError,
        lambda: module.param("w", jinit.zeros, (2, 3), axes=("embed",)),
        r"axes \('embed',\) name 1 dimensions, the shape \(2, 3\) has 2",
    )

    def bad_rule():
        with fj.nn.axis_rules([("embed", "data"), ("mlp",)]):
            pass

    _raises_at_this_file(fj.ArgumentError, bad_rule, r"rule 1 is \('mlp',\)")
    _raises_at_this_file(fj.ArgumentError, lambda: fj.Module(name="a/b"), "without '/'")


RULES = [("batch", "data"), ("embed", "model"), ("embed", "data"), ("mlp", "model")]


@pytest.mark.parametrize(
    "axes, spec",
    [
        (("batch", "embed"), fj.P("data", "model")),
        (("embed", "batch"), fj.P("model", "data")),  # first rule for "embed" wins
        (("embed", "mlp"), fj.P("model")),  # "model" taken: mlp replicated
        (("batch", None, "mlp"), fj.P("data", None, "model")),
        (("vocab", "embed"), fj.P(None, "model")),  # no rule: replicated
    ],
)
def test_logical_axes_map_to_a_spec(axes, spec):
    assert fj.nn.logical_spec(axes, RULES) == spec
    with fj.nn.axis_rules(RULES):
        assert fj.nn.logical_spec(axes) == spec


def test_logical_spec_takes_tuples_of_mesh_axes_and_inner_rules_win():
    rules = [("batch", ("data", "fsdp")), ("embed", "fsdp")]
    assert fj.nn.logical_spec(("batch", "embed"), rules) == fj.P(("data", "fsdp"))
    with fj.nn.axis_rules(rules), fj.nn.axis_rules([("embed", "model")]):
        assert fj.nn.logical_spec(("batch", "embed")) == fj.P(None, "model")
    assert fj.nn.logical_spec(("batch", "embed")) == fj.P()  # no rules in force


SHARDED = textwrap.dedent(
    """
    import json
    import numpy as np
    import flowjit as fj

    mesh = fj.Mesh(np.array(fj.devices()).reshape(4, 2), ("data", "model"))
    fsdp = [("batch", "data"), ("embed", "data"), ("mlp", "model")]
    x = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)  # kernels (16, 16)
    report = {}
    with mesh, fj.nn.axis_rules(fsdp):
        dense = fj.nn.Dense(16, in_features=16, kernel_axes=("embed", "mlp"), rng=3)
        mlp = fj.nn.MLP(16, rng=3)  # made on its first call, in the traced function

        @fj.compile(mesh=mesh)
        def f(x):
            x = fj.nn.with_logical_constraint(x, ("batch", "embed"))
            return dense(x), mlp(x)

        got, got_mlp = f(x)
    for path, v in [*dense.named_variables().items(), *mlp.named_variables().items()]:
        report[path] = list(v.value.sharding.spec)
    plain = fj.nn.Dense(16, in_features=16, rng=3)
    plain_mlp = fj.nn.MLP(16, rng=3)
    want, want_mlp = fj.compile(lambda x: (plain(x), plain_mlp(x)))(x)
    report["same_values"] = bool(
        np.allclose(got, want, rtol=1e-5, atol=1e-6)
        and np.allclose(got_mlp, want_mlp, rtol=1e-5, atol=1e-6)
    )
    report["same_kernel"] = bool(np.array_equal(np.asarray(dense.kernel), np.asarray(plain.kernel)))
    print(json.dumps(report))
    """
)


def test_variables_made_under_rules_and_a_mesh_are_sharded_and_compute_the_same():
    report = run_on_eight_devices(["-c", SHARDED], timeout=300)
    assert report == {
        "kernel": ["data", "model"],
        "bias": ["model"],
        "up/kernel": ["data", "model"],  # MLP's kernel axes: ("embed", "mlp")
        "up/bias": ["model"],
        "down/kernel": ["model", "data"],  # and ("mlp", "embed")
        "down/bias": ["data"],
        "same_values": True,
        "same_kernel": True,
    }
