"""fj.custom_vjp and fj.custom_jvp against jax.custom_vjp and jax.custom_jvp on the same
functions: results and gradients inside fj.compile and under fj.grad (inside and outside
compile), nested, in loops, on host calls, with nondiff_argnums and pytrees, second order;
the IR text holding the rule; errors naming the user's line."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flowjit.ir import parse, print_graph
from flowjit.ir.ops import custom as C

import flowjit as fj
import flowjit.numpy as fnp

X = np.array([0.3, 1.7, -2.2, 0.5], np.float32)


def close(got, want, tol=1e-5):
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=tol, atol=tol)
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)


def custom_vjp_pair(fun, fwd, bwd, fj_fun=None, jax_fun=None, nondiff_argnums=()):
    """The same custom function twice: on flowjit (fnp) and on jax (jnp). ``fun(np, ...)``
    and its rules take the numpy module as their first argument."""
    made = []
    for custom, np_ in ((fj.custom_vjp, fnp), (jax.custom_vjp, jnp)):
        f = custom(functools.partial(fun, np_), nondiff_argnums=nondiff_argnums)
        f.defvjp(functools.partial(fwd, np_, f), functools.partial(bwd, np_))
        made.append(f)
    return made


# -- straight-through estimator --------------------------------------------------------------
def ste_pair():
    return custom_vjp_pair(
        lambda np_, x: np_.round(x),
        lambda np_, f, x: (f(x), None),
        lambda np_, _, g: (g,),
    )


def test_straight_through_estimator():
    fj_ste, jax_ste = ste_pair()

    def loss(ste, np_):
        return lambda x: np_.sum(ste(x) * np_.sin(x))

    want = jax.grad(loss(jax_ste, jnp))(X)
    close(fj.grad(loss(fj_ste, fnp))(X), want)  # fj.grad outside compile
    step = fj.compile(lambda x: fj.value_and_grad(loss(fj_ste, fnp))(x))
    value, grad = step(X)  # fj.grad inside compile
    close(value, loss(jax_ste, jnp)(X))
    close(grad, want)
    close(fj.compile(fj_ste)(X), np.round(X))  # the primal alone
    # not the true gradient of round (zero): the rule is what counts
    assert not np.allclose(want, 0)


def test_forward_mode_of_a_custom_vjp_function_transposes_its_backward_function():
    """jax has no forward mode for custom_vjp; flowjit's tangents are bwd transposed, so
    fj.jvp agrees with fj.grad: the straight-through estimator's tangent is the identity's,
    a clipping backward's the clipped tangent."""
    fj_ste, _ = ste_pair()
    t = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    out, tangent = fj.jvp(lambda x: fj_ste(x) * 2, (X,), (t,))
    close((out, tangent), (np.round(X) * 2, t * 2))
    hessian_vector = fj.jvp(fj.grad(lambda x: (fj_ste(x) ** 2).sum()), (X,), (t,))[1]
    close(hessian_vector, 2 * t)  # d/dx of 2 round(x) through the rule: 2


def test_straight_through_estimator_runs_the_primal_once():
    fj_ste, _ = ste_pair()
    step = fj.compile(fj.grad(lambda x: fnp.sum(fj_ste(x) ** 2)))
    graph = parse(step.lower(X).ir())
    calls = [op for op in graph.ops if op.opdef is C.custom_vjp_call]
    assert len(calls) == 1 and calls[0].attrs["with_residuals"]
    assert not [op for op in graph.ops if op.opdef.name == "round"]


# -- clipping, routing and replacing cotangents ----------------------------------------------
def test_gradient_clipping_in_backward():
    fj_clip, jax_clip = custom_vjp_pair(
        lambda np_, x: x,
        lambda np_, f, x: (x, None),
        lambda np_, _, g: (np_.clip(g, -1.0, 1.0),),
    )

    def loss(clip, np_):
        return lambda x, w: np_.sum(np_.tanh(clip(x * w)) * 7.0)

    want = jax.grad(loss(jax_clip, jnp), argnums=(0, 1))(X, X[::-1])
    close(fj.grad(loss(fj_clip, fnp), argnums=(0, 1))(X, X[::-1]), want)
    assert np.abs(want[0] / X[::-1]).max() <= 1.0 + 1e-6


def test_routing_and_replacing_cotangents():
    # the cotangents swap arguments; y's is replaced by a constant times x
    fj_route, jax_route = custom_vjp_pair(
        lambda np_, x, y: (x * y, x + y),
        lambda np_, f, x, y: (f(x, y), (x, y)),
        lambda np_, res, g: (g[1] * res[1], g[0] * 0.0 + 2.0 * res[0]),
    )

    def loss(route, np_):
        def f(x, y):
            a, b = route(x, y)
            return np_.sum(a * 3.0 + np_.sin(b))

        return f

    args = (X, X**2 + 1)
    want = jax.grad(loss(jax_route, jnp), argnums=(0, 1))(*args)
    close(fj.grad(loss(fj_route, fnp), argnums=(0, 1))(*args), want)
    close(fj.compile(loss(fj_route, fnp))(*args), loss(jax_route, jnp)(*args))


def test_pytree_arguments_and_none_cotangents():
    fj_tree, jax_tree = custom_vjp_pair(
        lambda np_, d, t: {"a": d["u"] * t[0], "b": t[1]},
        lambda np_, f, d, t: (f(d, t), (d, t)),
        lambda np_, res, g: ({"u": g["a"] * res[1][0] * 10}, (None, g["b"] * 2)),
    )

    def loss(tree, np_):
        def f(u, v, w):
            out = tree({"u": u}, (v, w))
            return np_.sum(out["a"]) + np_.sum(out["b"] ** 2)

        return f

    want = jax.grad(loss(jax_tree, jnp), argnums=(0, 1, 2))(X, X + 1, X * 2)
    close(fj.grad(loss(fj_tree, fnp), argnums=(0, 1, 2))(X, X + 1, X * 2), want)
    assert np.all(np.asarray(want[1]) == 0)  # None: zero


def test_keyword_arguments_bind_by_position():
    def make(custom, np_):
        @custom
        def scaled(x, scale=2.0):
            return x * scale

        scaled.defvjp(lambda x, scale=2.0: (scaled(x, scale), scale), lambda s, g: (g * s, None))
        return lambda x, s: np_.sum(scaled(x, scale=s) + scaled(x))

    want = jax.grad(make(jax.custom_vjp, jnp), argnums=(0, 1))(X, np.float32(3.0))
    close(fj.grad(make(fj.custom_vjp, fnp), argnums=(0, 1))(X, np.float32(3.0)), want)


# -- host calls with a numpy gradient ----------------------------------------------------------
def like(x):
    return fj.ShapeDtype(x.shape, x.dtype)


@fj.custom_vjp
def host_sin(x):
    return fj.host_call(np.sin, x, result_shape_dtypes=like(x))


def host_sin_fwd(x):
    return host_sin(x), x


def host_sin_bwd(x, g):
    return (g * fj.host_call(np.cos, x, result_shape_dtypes=like(x)),)


host_sin.defvjp(host_sin_fwd, host_sin_bwd)


@jax.custom_vjp
def jax_host_sin(x):
    return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)


jax_host_sin.defvjp(
    lambda x: (jax_host_sin(x), x),
    lambda x, g: (g * jax.pure_callback(np.cos, jax.ShapeDtypeStruct(x.shape, x.dtype), x),),
)


def test_a_host_call_gets_a_numpy_gradient():
    def loss(f, np_):
        return lambda x, w: np_.sum(f(x * w) ** 2)

    want = jax.grad(loss(jax_host_sin, jnp), argnums=(0, 1))(X, X + 2)
    close(fj.grad(loss(host_sin, fnp), argnums=(0, 1))(X, X + 2), want)
    step = fj.compile(lambda x, w: fj.value_and_grad(loss(host_sin, fnp))(x, w))
    value, grad = step(X, X + 2)
    close(value, loss(jax_host_sin, jnp)(X, X + 2))
    close(grad, want[0])
    # the gradient rule's numpy cos runs on the host, between compiled clusters
    text = step.lower(X, X + 2).ir()
    assert 'name="cos"' in text


def test_a_host_call_in_a_scan_gets_a_numpy_gradient():
    def loss(f, scan):
        def run(x):
            c, _ = scan(lambda c, xi: (c + f(c * xi), None), np.float32(0.5), x)
            return c

        return run

    want = jax.grad(loss(jax_host_sin, jax.lax.scan))(X)
    close(fj.grad(loss(host_sin, fj.scan))(X), want)


# -- nondiff_argnums -------------------------------------------------------------------------
def test_nondiff_argnums():
    def make(custom, np_):
        @functools.partial(custom, nondiff_argnums=(0, 2))
        def scaled(activation, x, limit):
            return activation(x)

        scaled.defvjp(
            lambda activation, x, limit: (scaled(activation, x, limit), x),
            lambda activation, limit, x, g: (np_.clip(g * np_.cos(x), -limit, limit),),
        )
        return lambda x: np_.sum(scaled(np_.sin, x, 0.3) * x)

    want = jax.grad(make(jax.custom_vjp, jnp))(X * 3)
    close(fj.grad(make(fj.custom_vjp, fnp))(X * 3), want)


def test_a_tensor_nondiff_argument_gets_no_gradient():
    @functools.partial(fj.custom_vjp, nondiff_argnums=(1,))
    def f(x, limit):
        return x * limit

    f.defvjp(lambda x, limit: (f(x, limit), None), lambda limit, _, g: (g * limit,))
    grads = fj.grad(lambda x, y: fnp.sum(f(x, y * 2) + y), argnums=(0, 1))(X, X + 1)
    close(grads, ((X + 1) * 2, np.ones_like(X)))  # y: only its own use, not through f


# -- second order ----------------------------------------------------------------------------
def sin_pair():
    return custom_vjp_pair(
        lambda np_, x: np_.sin(x) * 2.0,
        lambda np_, f, x: (f(x), np_.cos(x)),
        lambda np_, cos_x, g: (g * cos_x * 2.0,),
    )


def test_second_and_third_order():
    fj_sin, jax_sin = sin_pair()
    x = np.float32(0.7)
    close(fj.grad(fj.grad(fj_sin))(x), jax.grad(jax.grad(jax_sin))(x))
    close(fj.grad(fj.grad(fj.grad(fj_sin)))(x), jax.grad(jax.grad(jax.grad(jax_sin)))(x))

    def mixed(sin, grad, value_and_grad):
        def f(x):
            value, slope = value_and_grad(sin)(x)
            return value * 3.0 + grad(sin)(x) * slope

        return f

    want = jax.grad(mixed(jax_sin, jax.grad, jax.value_and_grad))(x)
    close(fj.grad(mixed(fj_sin, fj.grad, fj.value_and_grad))(x), want)
    step = fj.compile(fj.grad(fj.grad(fj_sin)))
    close(step(x), jax.grad(jax.grad(jax_sin))(x))


# -- nesting, loops, branches, eager ------------------------------------------------------------
def test_nested_custom_functions_and_control_flow():
    fj_sin, jax_sin = sin_pair()
    fj_outer, jax_outer = custom_vjp_pair(
        lambda np_, x: x * x,
        lambda np_, f, x: (f(x), x),
        lambda np_, x, g: (g * x,),  # half the true gradient
    )

    def loss(outer, sin, np_, scan, cond):
        def f(x):
            c, ys = scan(lambda c, xi: (outer(sin(c * xi)), c), np.float32(0.4), x)
            return cond(c > 0, lambda c: c * 2.0, lambda c: outer(c), c) + np_.sum(ys)

        return f

    want = jax.grad(loss(jax_outer, jax_sin, jnp, jax.lax.scan, jax.lax.cond))(X)
    close(fj.grad(loss(fj_outer, fj_sin, fnp, fj.scan, fj.cond))(X), want)


def test_eager_mode():
    fj_sin, jax_sin = sin_pair()
    fj_f, jax_f = log1pexp_pair()
    fj.config.update("eager", True)
    try:
        got = fj.grad(lambda x: fnp.sum(fj_sin(x) ** 2 + fj_f(x)))(X)
        second = fj.grad(fj.grad(fj_sin))(np.float32(0.7))
    finally:
        fj.config.update("eager", False)
    close(got, jax.grad(lambda x: jnp.sum(jax_sin(x) ** 2 + jax_f(x)))(X))
    close(second, jax.grad(jax.grad(jax_sin))(np.float32(0.7)))


def test_variables_read_inside_and_passed_in():
    w = fj.Variable(np.array([1.5, -2.0, 0.5, 3.0], np.float32), name="w")

    @fj.custom_vjp
    def times_w(x):
        return x * w

    times_w.defvjp(lambda x: (times_w(x), None), lambda _, g: (g * 10.0,))
    close(fj.grad(lambda x: fnp.sum(times_w(x)))(X), np.full(4, 10.0, np.float32))

    @fj.custom_vjp
    def product(x, v):
        return x * v

    product.defvjp(lambda x, v: (product(x, v), (x, v)), lambda r, g: (g * r[1], g * r[0] * 2))

    @fj.compile
    def grad_w(x):
        return fj.gradients(fnp.sum(product(x, w)), [w])[0]

    close(grad_w(X), 2 * X)


# -- custom_jvp --------------------------------------------------------------------------------
def log1pexp_pair():
    def make(custom, np_):
        @custom
        def log1pexp(x):
            return np_.log(1.0 + np_.exp(x))

        @log1pexp.defjvp
        def log1pexp_jvp(primals, tangents):
            (x,), (t,) = primals, tangents
            return log1pexp(x), t * (1 - 1 / (1 + np_.exp(x)))

        return log1pexp

    return make(fj.custom_jvp, fnp), make(jax.custom_jvp, jnp)


def test_custom_jvp_numerically_safe_log1pexp():
    fj_f, jax_f = log1pexp_pair()
    x = np.array([1.0, 100.0, -3.0, 0.0], np.float32)
    want = jax.grad(lambda x: jnp.sum(jax_f(x)))(x)
    got = fj.grad(lambda x: fnp.sum(fj_f(x)))(x)
    close(got, want)
    assert np.all(np.isfinite(got)) and got[1] == 1.0  # (the plain derivative is nan there)
    naive = fj.grad(lambda x: fnp.sum(fnp.log(1.0 + fnp.exp(x))))(x)
    assert np.isnan(naive[1])
    close(fj.compile(fj_f)(x[[0, 2, 3]]), jax_f(x[[0, 2, 3]]))
    x0 = np.float32(0.5)
    close(fj.grad(fj.grad(fj_f))(x0), jax.grad(jax.grad(jax_f))(x0))


def test_custom_jvp_with_nondiff_argnums_and_defjvps():
    def make(custom, np_):
        @functools.partial(custom, nondiff_argnums=(0,))
        def app(scale, x, y):
            return np_.sin(x) * y * scale

        @app.defjvp
        def app_jvp(scale, primals, tangents):
            (x, y), (tx, ty) = primals, tangents
            return app(scale, x, y), (np_.cos(x) * y * tx + np_.sin(x) * ty) * scale * 2

        @custom
        def mul(x, y):
            return x * y

        mul.defjvps(lambda tx, out, x, y: tx * y * 3, None)
        return lambda x, y: np_.sum(app(1.5, x, y)) + np_.sum(mul(x, y))

    args = (X, X + 1)
    want = jax.grad(make(jax.custom_jvp, jnp), argnums=(0, 1))(*args)
    close(fj.grad(make(fj.custom_jvp, fnp), argnums=(0, 1))(*args), want)


# -- the IR text -------------------------------------------------------------------------------
def test_the_ir_text_holds_the_rule_and_parses_back():
    fj_sin, _ = sin_pair()
    fj_f, _ = log1pexp_pair()
    step = fj.compile(lambda x: fj.value_and_grad(lambda x: fnp.sum(fj_sin(x) + fj_f(x)))(x))
    for stage in ("traced", "optimized"):
        text = step.lower(X).ir(stage=stage)
        assert print_graph(parse(text)) == text
    traced = step.lower(X).ir(stage="traced")
    assert "custom_vjp_call(" in traced and "bwd=graph @bwd(" in traced
    assert "custom_jvp_call(" in traced and "jvp=graph @jvp(" in traced
    plain = fj.compile(lambda x: fj_sin(x)).lower(X).ir(stage="traced")
    op = parse(plain).ops[0]
    assert op.opdef is C.custom_vjp_call and not op.attrs["with_residuals"]
    assert [o.opdef.name for o in op.attrs["bwd"].ops] == ["mul", "constant", "mul"]


# -- errors ------------------------------------------------------------------------------------
def line_of(marker: str) -> str:
    """``test_custom_gradients.py:N``, N the line of this file that ends with ``marker``."""
    with open(__file__) as source:
        lines = source.read().splitlines()
    (n,) = [i + 1 for i, line in enumerate(lines) if line.endswith(f"# {marker}")]
    return f"test_custom_gradients.py:{n}"


def test_bwd_with_the_wrong_structure_names_the_users_line():
    @fj.custom_vjp
    def f(x, y):
        return x * y

    f.defvjp(lambda x, y: (f(x, y), None), lambda _, g: g)  # not a tuple
    with pytest.raises(
        fj.TypeMismatchError, match="must return a tuple with a cotangent per"
    ) as info:
        fj.grad(lambda x: fnp.sum(f(x, x)))(X)  # structure-call
    assert str(info.value).startswith(line_of("structure-call"))


def test_bwd_with_the_wrong_shape_names_the_users_line():
    @fj.custom_vjp
    def f(x, y):
        return x * y

    f.defvjp(lambda x, y: (f(x, y), None), lambda _, g: (g, g[:2]))  # bwd
    step = fj.compile(lambda x: fj.grad(lambda x: fnp.sum(f(x, x)))(x))  # shape-call
    with pytest.raises(
        fj.TypeMismatchError, match=r"args\[1\] is f32\[2\], but args\[1\] is f32\[4\]"
    ) as info:
        step(X)
    assert str(info.value).startswith(line_of("shape-call"))
    assert f"<lambda> ({line_of('bwd')})" in str(info.value)


def test_bwd_cotangent_of_another_structure():
    @fj.custom_vjp
    def f(pair):
        return pair[0] * pair[1]

    f.defvjp(lambda pair: (f(pair), None), lambda _, g: ({"a": g},))
    with pytest.raises(fj.TypeMismatchError, match=r"cotangent 0 has structure .*'a'"):
        fj.grad(lambda x: fnp.sum(f((x, x))))(X)


def test_fwd_output_unlike_the_function_output():
    @fj.custom_vjp
    def f(x):
        return x * 2

    f.defvjp(lambda x: (x[:2], None), lambda _, g: (g,))
    with pytest.raises(
        fj.TypeMismatchError, match=r"output gives f32\[2\] at result\[0\].*f32\[4\]"
    ):
        fj.grad(lambda x: fnp.sum(f(x)))(X)


def test_differentiating_a_closed_over_value_is_an_error():
    def loss(x):
        y = x * 2

        @fj.custom_vjp
        def f(z):
            return z * y

        f.defvjp(lambda z: (f(z), None), lambda _, g: (g,))
        return fnp.sum(f(x))

    with pytest.raises(fj.GradientError, match="closes over") as info:
        fj.grad(loss)(X)
    assert info.value.op == "custom_vjp_call"
    # jax refuses it too
    with pytest.raises(jax.errors.UnexpectedTracerError):

        def jax_loss(x):
            y = x * 2

            @jax.custom_vjp
            def f(z):
                return z * y

            f.defvjp(lambda z: (f(z), None), lambda _, g: (g,))
            return jnp.sum(f(x))

        jax.grad(jax_loss)(X)


def test_writing_a_variable_inside_is_refused_at_the_users_line():
    w = fj.Variable(np.zeros(4, np.float32), name="w")

    @fj.custom_vjp
    def f(x):
        w.assign(x)
        return x

    f.defvjp(lambda x: (f(x), None), lambda _, g: (g,))
    step = fj.compile(lambda x: f(x) * 2)  # writing-call
    with pytest.raises(fj.ShapeError, match="writes a variable") as info:
        step(X)
    assert str(info.value).startswith(line_of("writing-call"))


def test_calling_without_a_rule():
    f = fj.custom_vjp(lambda x: x)
    with pytest.raises(fj.ArgumentError, match=r"defvjp\(fwd, bwd\)"):
        fj.compile(f)(X)
    g = fj.custom_jvp(lambda x: x)
    with pytest.raises(fj.ArgumentError, match=r"defjvp\(jvp\)"):
        fj.compile(g)(X)


def test_custom_jvp_tangent_with_the_wrong_shape():
    @fj.custom_jvp
    def f(x):
        return x * 2

    f.defjvp(lambda p, t: (f(p[0]), t[0][:2]))
    with pytest.raises(
        fj.TypeMismatchError, match=r"output tangent for output is f32\[2\], but output is f32\[4\]"
    ):
        fj.grad(lambda x: fnp.sum(f(x)))(X)


# -- fj.vmap -----------------------------------------------------------------------------------
def test_vmap_of_grad_and_grad_of_vmap():
    # bwd scales w's cotangent by 3: a shared w's cotangent is summed over the examples
    fj_f, jax_f = custom_vjp_pair(
        lambda np_, w, x: np_.sin(x * w),
        lambda np_, f, w, x: (f(w, x), (w, x)),
        lambda np_, r, g: (g * np_.cos(r[1] * r[0]) * r[1] * 3, g * np_.cos(r[1] * r[0]) * r[0]),
    )
    fj_g, jax_g = log1pexp_pair()
    w = np.array([0.5, -1.0, 2.0, 0.3], np.float32)
    xs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)

    def loss(f, g, np_):
        return lambda w, x: np_.sum(f(w, x) ** 2 + g(x * w))

    per_example = fj.vmap(fj.grad(loss(fj_f, fj_g, fnp)), in_axes=(None, 0))(w, xs)
    close(per_example, jax.vmap(jax.grad(loss(jax_f, jax_g, jnp)), in_axes=(None, 0))(w, xs))

    def total(vmap, grad, f, g, np_):
        return grad(lambda w: np_.sum(vmap(loss(f, g, np_), in_axes=(None, 0))(w, xs)))

    want = total(jax.vmap, jax.grad, jax_f, jax_g, jnp)(w)
    close(total(fj.vmap, fj.grad, fj_f, fj_g, fnp)(w), want)
