"""Saturating curve forms, written for variable projection and batched least squares.

Each form is linear in some parameters once its nonlinear ones are fixed:

    sigmoid      R = R0 + (A - R0) / (1 + (C_mid / C)^B)     (ScaleRL, Khatri et al. 2025)
                   = R0 * (1 - s) + A * s,  s = 1 / (1 + (C_mid / C)^B)      nonlinear: C_mid, B
    power        R = A - D * C^(-B)                                              nonlinear: B
    exponential  R = A + (R0 - A) * exp(-C / tau)                                nonlinear: tau
    plateau      R = A for C >= C_from (undefined before)        no rise: the level a run holds (fixed C_from)

Internally x is divided by `x_scale` (the largest x fitted) so every parameter is of order one, and the
nonlinear scale parameters are stored as logs. `theta` is the internal vector; `natural()` converts it to
the reported parameters in the caller's units. Every function takes a batch of thetas, shape (B, p), and
returns (B, n) values or (B, n, p) Jacobians, so that a bootstrap refits all replicates at once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

FloatArray = np.ndarray


def _safe_log(u: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore"):
        return np.log(u)


@dataclass(frozen=True)
class Form:
    """A curve form: names, which theta entries are linear, the grid over the nonlinear ones."""

    name: str
    formula: str
    theta_names: tuple[str, ...]
    natural_names: tuple[str, ...]
    linear: tuple[int, ...]  # indices of theta entries that enter linearly
    needs_positive_x: bool

    # --- values and derivatives (overridden) -------------------------------------------------------
    def f(self, u: FloatArray, theta: FloatArray) -> FloatArray:  # pragma: no cover - abstract
        raise NotImplementedError

    def jac(self, u: FloatArray, theta: FloatArray) -> FloatArray:  # pragma: no cover - abstract
        raise NotImplementedError

    def f_jac(self, u: FloatArray, theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Values and Jacobian together (forms override this when they can share work)."""
        return self.f(u, theta), self.jac(u, theta)

    def grid(self, u: FloatArray) -> FloatArray:  # pragma: no cover - abstract
        """Candidate values of the nonlinear theta entries, shape (G, p - len(linear))."""
        raise NotImplementedError

    def basis(self, u: FloatArray, phi: FloatArray) -> FloatArray:  # pragma: no cover - abstract
        """Columns multiplying the linear parameters, shape (G, n, len(linear)), for nonlinear values phi (G, q)."""
        raise NotImplementedError

    def bounds_nl(self, u: FloatArray) -> tuple[FloatArray, FloatArray]:  # pragma: no cover - abstract
        """Lower and upper bounds of the nonlinear theta entries."""
        raise NotImplementedError

    def natural(self, theta: FloatArray, x_scale: float) -> FloatArray:  # pragma: no cover - abstract
        """Reported parameters (caller's units), same batch shape as theta."""
        raise NotImplementedError

    def ceiling_index(self) -> int:
        return self.natural_names.index("A")

    def start_index(self) -> int | None:
        """Index in natural params of the starting value R0 (None if the form has none)."""
        return self.natural_names.index("R0") if "R0" in self.natural_names else None

    @property
    def nonlinear(self) -> tuple[int, ...]:
        return tuple(i for i in range(len(self.theta_names)) if i not in self.linear)

    def assemble(self, lin: FloatArray, phi: FloatArray) -> FloatArray:
        """Build theta (G, p) from linear (G, m) and nonlinear (G, q) parts."""
        theta = np.empty((lin.shape[0], len(self.theta_names)))
        theta[:, list(self.linear)] = lin
        theta[:, list(self.nonlinear)] = phi
        return theta


class Sigmoid(Form):
    """ScaleRL sigmoid in log-compute: theta = (R0, A, log c, B), c = C_mid / x_scale."""

    def __init__(self) -> None:
        super().__init__("sigmoid", "R = R0 + (A - R0) / (1 + (C_mid / C)^B)", ("R0", "A", "log_c", "B"),
                         ("R0", "A", "C_mid", "B"), (0, 1), False)

    @staticmethod
    def _s(u: FloatArray, logc: FloatArray, b: FloatArray) -> FloatArray:
        """s = 1 / (1 + (c / u)^B) = expit(B (log u - log c)); 0 at u = 0."""
        with np.errstate(invalid="ignore"):
            z = b[:, None] * (_safe_log(u)[None, :] - logc[:, None])
        return expit(np.nan_to_num(z, nan=0.0, neginf=-np.inf))

    def f(self, u: FloatArray, theta: FloatArray) -> FloatArray:
        s = self._s(u, theta[:, 2], theta[:, 3])
        return theta[:, :1] + (theta[:, 1:2] - theta[:, :1]) * s

    def f_jac(self, u: FloatArray, theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        s = self._s(u, theta[:, 2], theta[:, 3])
        amp = (theta[:, 1] - theta[:, 0])[:, None]
        ds = -s * (1.0 - s) * amp
        lu = _safe_log(u)[None, :]
        dlog = np.where(np.isfinite(lu), theta[:, 2:3] - lu, 0.0)
        jac = np.empty(s.shape + (4,))
        jac[..., 0] = 1.0 - s
        jac[..., 1] = s
        jac[..., 2] = ds * theta[:, 3:4]
        jac[..., 3] = ds * dlog
        return theta[:, :1] + amp * s, jac

    def jac(self, u: FloatArray, theta: FloatArray) -> FloatArray:
        return self.f_jac(u, theta)[1]

    def grid(self, u: FloatArray) -> FloatArray:
        lo, hi = self.bounds_nl(u)
        logc = np.linspace(lo[0], hi[0], 40)
        b = np.geomspace(lo[1] * 1.5, 6.0, 24)
        return np.array([(c, bb) for c in logc for bb in b])

    def bounds_nl(self, u: FloatArray) -> tuple[FloatArray, FloatArray]:
        upos = u[u > 0]
        lo_c = np.log(upos.min()) - 1.0 if upos.size else np.log(1e-3)
        return np.array([lo_c, 0.2]), np.array([np.log(20.0), 12.0])

    def basis(self, u: FloatArray, phi: FloatArray) -> FloatArray:
        s = self._s(u, phi[:, 0], phi[:, 1])
        return np.stack([1.0 - s, s], axis=-1)

    def natural(self, theta: FloatArray, x_scale: float) -> FloatArray:
        out = theta.copy()
        out[..., 2] = np.exp(theta[..., 2]) * x_scale
        return out


class PowerLaw(Form):
    """Power law with an asymptote: theta = (A, D, B), R = A - D * u^(-B) (D in units of x_scale^B)."""

    def __init__(self) -> None:
        super().__init__("power", "R = A - D * C^(-B)", ("A", "D", "B"), ("A", "D", "B"), (0, 1), True)

    def f(self, u: FloatArray, theta: FloatArray) -> FloatArray:
        return theta[:, :1] - theta[:, 1:2] * u[None, :] ** (-theta[:, 2:3])

    def jac(self, u: FloatArray, theta: FloatArray) -> FloatArray:
        p = u[None, :] ** (-theta[:, 2:3])
        ones = np.ones_like(p)
        return np.stack([ones, -p, theta[:, 1:2] * p * np.log(u)[None, :]], axis=-1)

    def bounds_nl(self, u: FloatArray) -> tuple[FloatArray, FloatArray]:
        return np.array([0.01]), np.array([5.0])

    def grid(self, u: FloatArray) -> FloatArray:
        return np.geomspace(0.015, 5.0, 80)[:, None]

    def basis(self, u: FloatArray, phi: FloatArray) -> FloatArray:
        p = u[None, :] ** (-phi[:, :1])
        return np.stack([np.ones_like(p), -p], axis=-1)

    def natural(self, theta: FloatArray, x_scale: float) -> FloatArray:
        out = theta.copy()
        out[..., 1] = theta[..., 1] * x_scale ** theta[..., 2]
        return out


class Exponential(Form):
    """Exponential saturation: theta = (R0, A, log k), R = A + (R0 - A) * exp(-k u), tau = x_scale / k."""

    def __init__(self) -> None:
        super().__init__("exponential", "R = A + (R0 - A) * exp(-C / tau)", ("R0", "A", "log_k"),
                         ("R0", "A", "tau"), (0, 1), False)

    def f(self, u: FloatArray, theta: FloatArray) -> FloatArray:
        e = np.exp(-np.exp(theta[:, 2:3]) * u[None, :])
        return theta[:, 1:2] + (theta[:, :1] - theta[:, 1:2]) * e

    def jac(self, u: FloatArray, theta: FloatArray) -> FloatArray:
        k = np.exp(theta[:, 2:3])
        e = np.exp(-k * u[None, :])
        d_logk = (theta[:, :1] - theta[:, 1:2]) * e * (-k * u[None, :])
        return np.stack([e, 1.0 - e, d_logk], axis=-1)

    def bounds_nl(self, u: FloatArray) -> tuple[FloatArray, FloatArray]:
        return np.array([np.log(0.02)]), np.array([np.log(500.0)])

    def grid(self, u: FloatArray) -> FloatArray:
        return np.linspace(np.log(0.03), np.log(300.0), 80)[:, None]

    def basis(self, u: FloatArray, phi: FloatArray) -> FloatArray:
        e = np.exp(-np.exp(phi[:, :1]) * u[None, :])
        return np.stack([e, 1.0 - e], axis=-1)

    def natural(self, theta: FloatArray, x_scale: float) -> FloatArray:
        out = theta.copy()
        out[..., 2] = x_scale / np.exp(theta[..., 2])
        return out


class Plateau(Form):
    """A level held from C_from on: theta = (A, u_from), R = A for u >= u_from, NaN before (the plateau says
    nothing about the rise before it). Not fitted by least squares: `ceiling.fit.curve` takes the mean of the
    points in the last doubling of x and tests that they hold level (see `CurveFitter(form="plateau")`)."""

    def __init__(self) -> None:
        super().__init__("plateau", "R = A for C >= C_from", ("A", "u_from"), ("A", "C_from"), (0,), False)

    def f(self, u: FloatArray, theta: FloatArray) -> FloatArray:
        on = u[None, :] >= theta[:, 1:2] * (1.0 - 1e-12)
        return np.where(on, theta[:, :1], np.nan)

    def jac(self, u: FloatArray, theta: FloatArray) -> FloatArray:
        on = u[None, :] >= theta[:, 1:2] * (1.0 - 1e-12)
        return np.stack([np.where(on, 1.0, np.nan), np.where(on, 0.0, np.nan)], axis=-1)

    def bounds_nl(self, u: FloatArray) -> tuple[FloatArray, FloatArray]:
        return np.array([0.0]), np.array([1.0])

    def grid(self, u: FloatArray) -> FloatArray:
        return np.array([[0.5]])

    def basis(self, u: FloatArray, phi: FloatArray) -> FloatArray:
        return (u[None, :] >= phi[:, :1]).astype(float)[..., None]

    def natural(self, theta: FloatArray, x_scale: float) -> FloatArray:
        out = theta.copy()
        out[..., 1] = theta[..., 1] * x_scale
        return out


FORMS: dict[str, Form] = {f.name: f for f in (Sigmoid(), PowerLaw(), Exponential(), Plateau())}
RISING_FORMS: tuple[str, ...] = ("sigmoid", "power", "exponential")
"""The forms that describe a rise to a ceiling (compared by `compare_forms`; the plateau is its fallback)."""


def get_form(name: str) -> Form:
    """Look up a form by name ("sigmoid", "power", "exponential", "plateau")."""
    from ceiling.errors import CeilingError

    if name not in FORMS:
        raise CeilingError(f"unknown curve form {name!r}; choose one of {', '.join(FORMS)}")
    return FORMS[name]


def to_theta(form: Form, natural: FloatArray, x_scale: float) -> FloatArray:
    """Inverse of `Form.natural` (used when a stored fit is rebuilt)."""
    nat = np.atleast_2d(np.asarray(natural, dtype=float))
    theta = nat.copy()
    if form.name == "sigmoid":
        theta[:, 2] = np.log(nat[:, 2] / x_scale)
    elif form.name == "power":
        theta[:, 1] = nat[:, 1] / x_scale ** nat[:, 2]
    elif form.name == "exponential":
        theta[:, 2] = np.log(x_scale / nat[:, 2])
    elif form.name == "plateau":
        theta[:, 1] = nat[:, 1] / x_scale
    return theta
