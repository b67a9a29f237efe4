# SPDX-License-Identifier: Apache-2.0
"""`HealthMonitor`: does the robot still behave like its model? Residuals, identification, events, forecasts.

Fed with the robot's measured joint states in time order (positions, velocities and the drive efforts every
joint-state message carries), it keeps, per monitored joint:

1. **The momentum observer** (`MomentumObserver`): the external torque ``r`` on each joint, from the current
   model (nominal plus what identification found), without accelerations. Normalised by its learned spread,
   a value beyond the threshold opens an *episode*; a short one is a **collision**, one that lasts longer than
   ``persistent_s`` is explained, after the payload has been re-identified from fresh data, as a **payload
   change**, a **torque-sensor bias**, or else a lasting **contact**. The robot then carries the identified
   payload in the observer's model, so the residual returns to zero.
2. **Identification** (`ModelIdentifier`): Coulomb and viscous friction, a torque-sensor bias per joint and one
   payload (mass, centre of mass), by recursive least squares on the inverse-dynamics residual (accelerations
   from a centred quadratic fit of the measured velocities, 3 samples later). A **friction rise** is raised
   when the identified friction exceeds nominal by ``wear_alarm_ratio`` with 95 % confidence.
3. **Drive saturation** (effort at its limit for ``saturation_min_s``) and **encoder faults** (a jump off the
   motion, a value that freezes while the joint moves).
4. **Wear trends** (`WearTrend`): friction / nominal and energy per program cycle every ``trend_interval_s``,
   with a time-to-service forecast.

Thresholds come from the false-alarm target ``false_alarm_hours`` (`exceedance_threshold`), shared between the
detectors. Residual spreads are learned outside episodes, with ``sigma_effort`` as their floor.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..robot import ArticulatedTree, JointType, RigidBodyDynamics, RobotModel, tree_from_robot
from ._events import HealthEvent
from ._identify import FrictionEstimate, ModelIdentifier, PayloadEstimate
from ._observer import MomentumObserver
from ._settings import HealthSettings
from ._spread import RunningSpread
from ._thresholds import exceedance_threshold, gaussian_tail_probability
from ._trend import Forecast, WearTrend, cycle_period

__all__ = ["HealthMonitor", "HealthSummary", "JointHealth"]

_FIT_HALF = 3  # samples on each side of the centred velocity fit (7 in all)
_SHARES = {"observer": 0.6, "identification": 0.2, "sensors": 0.2}  # false-alarm budget per detector family
_CHECK_EVERY_S = 1.0  # slow checks (friction, bias) at most this often
_IDENTIFY_HZ = 100.0  # identification updates per second, at most
_IDENTIFY_BATCH_S = 0.1  # identification runs on batches of this much sample time
_MAX_STEPS = 3.0  # the observer integrates over at most this many regular sample spacings (a longer gap restarts it)
_CERTAIN = 40.0  # "sigmas" of a deterministic check (saturation, a frozen or jumping encoder): confidence 1


@dataclass(frozen=True)
class JointHealth:
    """One monitored joint as the views show it.

    Attributes:
        name. external_torque: the observer's estimate, N·m. z: its normalised value (|z| above ``threshold``
        opens an episode). sigma: its learned spread, N·m. friction: the identified friction (`FrictionEstimate`).
        forecast: the wear forecast or None. state: "ok" or the kind of the last unresolved event.
    """

    name: str
    external_torque: float
    z: float
    sigma: float
    threshold: float
    friction: FrictionEstimate
    forecast: Forecast | None
    state: str


@dataclass(frozen=True)
class HealthSummary:
    """The monitor's state (plain values; safe to keep; ``to_dict`` is the retained MQTT summary)."""

    t_s: float
    samples: int
    joints: tuple[JointHealth, ...]
    payload: PayloadEstimate
    events: tuple[HealthEvent, ...]
    cycle_period_s: float | None
    energy_per_cycle_j: dict[str, float]
    notes: tuple[str, ...] = ()
    last_episode: dict[str, Any] | None = None
    """The last closed episode of external torque: ``onset_s``, ``end_s``, ``duration_s``, ``joints``, ``peak_nm``,
    ``peak_z`` and ``explained_as`` (collision, contact, payload_change, torque_sensor_bias)."""

    @property
    def state(self) -> str:
        """ "ok", or "attention" when a joint has an unresolved event."""
        return "attention" if any(j.state != "ok" for j in self.joints) else "ok"

    def to_dict(self) -> dict[str, Any]:
        def num(x: float | None) -> float | None:
            return float(x) if x is not None and math.isfinite(x) else None

        return {
            "version": 1,
            "t_s": num(self.t_s),
            "state": self.state,
            "samples": self.samples,
            "joints": [
                {
                    "name": j.name,
                    "state": j.state,
                    "external_torque_nm": num(j.external_torque),
                    "z": num(j.z),
                    "threshold": num(j.threshold),
                    "friction_ratio": num(j.friction.ratio),
                    "friction_ratio_ci": num(j.friction.ratio_ci),
                    "coulomb_nm": num(j.friction.coulomb),
                    "viscous_nms_per_rad": num(j.friction.viscous),
                    "bias_nm": num(j.friction.bias),
                    "identifiable": j.friction.identifiable,
                    "note": j.friction.note,
                    "forecast": None if j.forecast is None else j.forecast.message,
                    "hours_to_service": None if j.forecast is None else num(j.forecast.hours),
                }
                for j in self.joints
            ],
            "payload": {
                "link": self.payload.link,
                "mass_kg": num(self.payload.mass),
                "mass_ci_kg": num(self.payload.mass_ci),
                "com_m": [num(x) for x in self.payload.com],
                "identifiable": self.payload.identifiable,
                "note": self.payload.note,
            },
            "cycle_period_s": num(self.cycle_period_s),
            "energy_per_cycle_j": {k: num(v) for k, v in self.energy_per_cycle_j.items()},
            "events": [e.to_dict() for e in self.events[-10:]],
            "last_episode": self.last_episode,
            "notes": list(self.notes),
        }


@dataclass
class _Episode:
    """An external torque above threshold on some joints, from ``onset`` on."""

    onset: float
    joints: set[int]
    peak: np.ndarray
    peak_z: float
    persistent: bool = False
    check_at: float = math.inf
    mass_before: float = 0.0
    bias_before: np.ndarray = field(default_factory=lambda: np.zeros(0))
    quiet_since: float | None = None
    explained_as: str = "collision"


@dataclass
class _IdentificationBatch:
    """The centres of a batch of identification windows: ``t [K]`` s, ``q, qd, tau [K, ndof]``, and each window's
    times ``window_t [K, 7]`` (s) and velocities ``window_qd [K, 7, ndof]`` for the centred fit."""

    t: np.ndarray
    q: np.ndarray
    qd: np.ndarray
    tau: np.ndarray
    window_t: np.ndarray
    window_qd: np.ndarray


@dataclass
class _Judgement:
    """One `HealthMonitor.observe` call between its phases: the usable samples ``t [N]``, ``q, qd, tau,
    tau_corrected [N, ndof]``, the events raised so far and the identification batch that is due (or None)."""

    t: np.ndarray
    q: np.ndarray
    qd: np.ndarray
    tau: np.ndarray
    tau_corrected: np.ndarray
    events: list[HealthEvent]
    identification: _IdentificationBatch | None = None


def velocity_slopes(times: np.ndarray, velocities: np.ndarray) -> np.ndarray:
    """Accelerations at the centre of each window from a centred quadratic fit of its velocities.

    Args:
        times: ``[K, W]`` sample times of each window, s (the centre is sample ``W // 2``).
        velocities: ``[K, W, ndof]`` measured velocities, rad/s | m/s.

    Returns:
        ``[K, ndof]`` rad/s² | m/s²: ``b`` of the least-squares ``qd ~ a + b x + c x²``, ``x`` the time from the
        centre (all windows in one batched pseudo-inverse).
    """
    x = times - times[:, times.shape[1] // 2 : times.shape[1] // 2 + 1]
    basis = np.stack([np.ones_like(x), x, x * x], axis=2)  # [K, W, 3]
    return (np.linalg.pinv(basis)[:, 1:2, :] @ velocities)[:, 0, :]


class HealthMonitor:
    """Model-based health monitoring of one robot (see the module docstring).

    Args:
        model: the robot's `RobotModel` (friction, damping and armature of the model are the nominal ones).
        settings: `HealthSettings`.
        robot_id: recorded in the wear history.
        epoch_unix_s: Unix time of sample time 0 (for trends that span runs); default: now minus the first
            sample's time.
    """

    def __init__(
        self,
        model: RobotModel,
        settings: HealthSettings | None = None,
        *,
        robot_id: str = "",
        epoch_unix_s: float | None = None,
    ) -> None:
        s = self.settings = settings or HealthSettings()
        self.model = model
        if s.joints:
            unknown = [j for j in s.joints if j not in model.dof_names]
            if unknown:
                raise ValueError(f"[health] joints {unknown} are not joints of {model.name}: {list(model.dof_names)}")
            self.joint_index = np.array([model.dof_names.index(j) for j in s.joints])
        else:
            self.joint_index = np.array([d for d in range(model.ndof) if model.dof_type[d] == JointType.REVOLUTE])
        if len(self.joint_index) == 0:
            raise ValueError(f"{model.name} has no revolute joint to monitor; set [health] joints")
        self.joint_names = tuple(model.dof_names[d] for d in self.joint_index)
        nj = len(self.joint_index)
        self.tree = tree_from_robot(model)
        self.nominal = RigidBodyDynamics(self.tree, armature=model.armature)
        self.payload_body, self.payload_link = self._holding_body(model, s.payload_link)
        link = model.link_names.index(self.payload_link)
        in_body = self.tree.link_in_body[link]
        self.identifier = ModelIdentifier(
            self.joint_names,
            model.friction[self.joint_index],
            model.damping[self.joint_index],
            payload_link=self.payload_link,
            link_rotation=in_body[:3, :3],
            link_offset=in_body[:3, 3],
            window_s=s.identification_window_s,
            friction_eps=s.friction_smoothing,
            reference_speed=s.reference_speed,
            min_speed=s.min_speed,
        )
        self.observer = MomentumObserver(self.nominal, gain=s.observer_gain, friction=self._model_friction)
        self.observer_spread = RunningSpread(nj, floor=s.sigma_effort, memory=1.0)
        self.residual_spread = RunningSpread(nj, floor=s.sigma_effort, memory=1.0)
        self.robot_id = robot_id
        self.epoch_unix_s = epoch_unix_s
        self._epoch_given = epoch_unix_s is not None
        self.trend = WearTrend(self.joint_names, limit=s.service_limit_ratio, path=s.history_path, robot_id=robot_id)
        self.events: deque[HealthEvent] = deque(maxlen=200)
        self.last_episode: dict[str, Any] | None = None
        """The last closed episode: onset, end, duration (s), joints, peak (N·m and sigmas), what it was."""
        self.samples = 0
        # The last samples (at most 2 _FIT_HALF) before the next ones, for the velocity-fit windows: t [m], q, qd, tau
        self._recent: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        # Pending identification windows, per judgement that found some: (window_t [k, W], q, qd, tau [k, ndof] at
        # the centres, window_qd [k, W, ndof])
        self._centres: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._next_identify = -math.inf
        self._dt = 0.005  # running mean sample spacing, s
        self._z_observer = math.inf  # thresholds, set once the sample rate is known
        self._z_slow = math.inf
        self._episode: _Episode | None = None
        self._last_r = np.zeros(nj)
        self._trusted = np.zeros(nj, dtype=bool)  # joints whose identified friction and bias the model uses
        self._over_run = np.zeros(nj, dtype=int)  # consecutive samples each joint has been above threshold
        self._last_t: float | None = None
        self._next_check = -math.inf
        self._next_trend: float | None = None
        self._adopted_mass = 0.0  # payload mass the observer's model carries, kg
        self._friction_flagged = np.zeros(nj, dtype=bool)
        self._bias_flagged = np.zeros(nj, dtype=bool)
        self._saturated_since = np.full(nj, math.nan)
        self._saturation_flagged = np.zeros(nj, dtype=bool)
        self._stuck_since = np.full(nj, math.nan)
        self._stuck_flagged = np.zeros(nj, dtype=bool)
        self._last_q: np.ndarray | None = None
        self._last_t_enc: float | None = None
        self._last_qd: np.ndarray | None = None
        self._glitch_pending: tuple[float, int, float, np.ndarray] | None = None
        self._power = np.zeros(nj)  # mean |tau qd| over the trend interval, W
        self._power_time = 0.0
        self._decimated: deque[tuple[float, np.ndarray]] = deque(maxlen=2400)  # ~4 min at 10 Hz
        self._last_decimated = -math.inf
        self._period: float | None = None
        self._energy: dict[str, float] = {}
        self.notes: list[str] = []

    # ---- set-up -----------------------------------------------------------------------------------------
    def _holding_body(self, model: RobotModel, link_name: str) -> tuple[int, str]:
        if link_name:
            if link_name not in model.link_names:
                raise ValueError(
                    f"[health] payload_link {link_name!r} is not a link of {model.name}: {model.link_names}"
                )
            link = model.link_names.index(link_name)
            body = int(self.tree.link_body[link])
            if body < 0:
                raise ValueError(f"[health] payload_link {link_name!r} is welded to the world; pick a moving link")
            return body, link_name
        body = int(self.joint_index[-1])  # bodies share the dof order
        riders = [i for i in range(model.nlink) if self.tree.link_body[i] == body]
        return body, model.link_names[riders[-1]]  # the deepest link welded to it (a Panda's hand)

    def _model_friction(self, qd: np.ndarray) -> np.ndarray:
        """Friction and damping efforts the model knows (nominal plus identified), ``[N, ndof]``."""
        m = self.model
        tau = m.damping * qd + m.friction * np.tanh(qd / self.settings.friction_smoothing)
        theta = self.identifier.rls.theta
        j = self.joint_index
        c = 10 + 3 * np.arange(len(j))
        use = self._trusted
        change = theta[c] * np.tanh(qd[:, j] / self.settings.friction_smoothing) + theta[c + 1] * qd[:, j]
        tau[:, j] += np.where(use, change, 0.0)
        return tau

    def _thresholds(self) -> None:
        s, nj = self.settings, len(self.joint_index)
        rate = 1.0 / self._dt
        self._z_observer = exceedance_threshold(
            false_alarm_hours=s.false_alarm_hours, looks_per_second=rate, channels=nj, share=_SHARES["observer"]
        )
        # Slow checks look once a second at estimates with a memory of identification_window_s: successive looks
        # see nearly the same number, so independent looks come about once per memory window.
        self._z_slow = exceedance_threshold(
            false_alarm_hours=s.false_alarm_hours,
            looks_per_second=1.0 / s.identification_window_s,
            channels=2 * nj,
            share=_SHARES["identification"],
        )

    # ---- feeding ----------------------------------------------------------------------------------------
    def observe(self, t_s: np.ndarray, q: np.ndarray, qd: np.ndarray, tau: np.ndarray) -> list[HealthEvent]:
        """Process ``N`` joint-state samples in time order; returns the events they raised.

        Args:
            t_s: ``[N]`` sampling times, s (the robot's source stamps on the twin clock). Samples not later than
                the previous one are skipped (the monitor needs time order; the estimator handles the rest).
            q, qd, tau: ``[N, ndof]`` measured positions (rad|m), velocities (rad/s | m/s) and drive efforts
                (N·m | N), in the model's dof order; NaN where a joint was not measured.
        """
        judgement = self._begin(t_s, q, qd, tau)
        if judgement is None:
            return []
        self._after_observer(judgement, self.observer.update(**self._observer_inputs(judgement)))
        work = judgement.identification
        if work is not None:
            qdd = velocity_slopes(work.window_t, work.window_qd)
            rigid, rows = self.nominal.inverse_dynamics_and_regressor(work.q, work.qd, qdd, body=self.payload_body)
            innovation = self.identifier.update(*self._identification_rows(work, rigid, rows))
            self._identification_learned(work, innovation)
        return self._end(judgement)

    # ---- the phases of `observe` (a fleet runs them for many robots side by side: `BatchedHealthMonitor`) ----------
    def _begin(self, t_s, q, qd, tau) -> _Judgement | None:
        """Time order, usable samples, sample spacing, thresholds, encoder checks and the bias-corrected efforts;
        None when no sample is usable."""
        t_s = np.atleast_1d(np.asarray(t_s, dtype=np.float64))
        q, qd, tau = (np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in (q, qd, tau))
        keep = np.ones(len(t_s), dtype=bool)
        last = self._last_t
        for i, t in enumerate(t_s):
            if last is not None and t <= last:
                keep[i] = False
            else:
                last = t
        usable = keep & np.all(np.isfinite(q), axis=1) & np.all(np.isfinite(qd), axis=1)
        usable &= np.all(np.isfinite(tau[:, self.joint_index]), axis=1)
        if not np.any(usable):
            if np.any(keep) and not np.all(np.isfinite(tau[keep][:, self.joint_index])):
                self._note("the robot sends no effort for the monitored joints: no residuals without it")
            return None
        t_s, q, qd, tau = t_s[usable], q[usable], qd[usable], tau[usable]
        if self.epoch_unix_s is None:
            self.epoch_unix_s = time.time() - float(t_s[0])
        if self._last_t is not None:
            gaps = np.diff(np.concatenate([[self._last_t], t_s]))
            self._dt = float(0.98 * self._dt + 0.02 * np.median(gaps))
        if self.samples == 0 or self.samples % 256 == 0:
            self._thresholds()
        j = self.joint_index
        events = self._encoder_checks(t_s, q[:, j], qd[:, j])
        self._trusted = self.identifier.trusted()
        bias = np.where(self._trusted, self.identifier.rls.theta[10 + 3 * np.arange(len(j)) + 2], 0.0)
        tau_corrected = tau.copy()
        tau_corrected[:, j] -= bias  # the observer judges the efforts the sensors should have read
        return _Judgement(t_s, q, qd, tau, tau_corrected, events)

    def _observer_inputs(self, judgement: _Judgement) -> dict[str, Any]:
        """Keyword arguments of `MomentumObserver.update` for this judgement's samples."""
        return {
            "t": judgement.t,
            "q": judgement.q,
            "qd": judgement.qd,
            "tau": judgement.tau_corrected,
            "regular_step": self._dt,
            "max_step": _MAX_STEPS * self._dt,
        }

    def _after_observer(self, judgement: _Judgement, r_all: np.ndarray) -> None:
        """Episodes and saturation sample by sample from the observer's output ``r_all [N, ndof]`` (N·m), then the
        identification's windows: ``judgement.identification`` is set when a batch of them is due."""
        t_s, qd, tau, j = judgement.t, judgement.qd, judgement.tau, self.joint_index
        u_all, inflation = self.observer.quadrature_error, self.observer.noise_inflation
        new = judgement.events
        for i in range(len(t_s)):
            new += self._observer_step(float(t_s[i]), r_all[i, j], qd[i, j], u_all[i, j], float(inflation[i]))
            new += self._saturation_step(float(t_s[i]), tau[i, j])
        judgement.identification = self._identification_due(t_s, judgement.q, qd, tau)

    def _end(self, judgement: _Judgement) -> list[HealthEvent]:
        """Power and cycles, the slow checks and the trend; the judgement's events (also kept in `events`)."""
        t_s, j, new = judgement.t, self.joint_index, judgement.events
        self._power_and_cycles(t_s, judgement.q[:, j], judgement.qd[:, j], judgement.tau[:, j])
        now = float(t_s[-1])
        if now >= self._next_check:
            self._next_check = now + _CHECK_EVERY_S
            new += self._slow_checks(now)
        new += self._trend_step(now)
        self._last_t = now
        self.samples += len(t_s)
        self.events.extend(new)
        return new

    # ---- the observer and episodes ---------------------------------------------------------------------------
    def _static_friction(self, qd: np.ndarray) -> np.ndarray:
        """``[J]`` torque static friction may hold at these speeds, N·m: ``F_c (1 - |tanh(qd / eps)|)`` with the
        identified Coulomb level (the smooth model's error is largest near rest, where the real friction can be
        anything up to ``F_c``)."""
        theta = self.identifier.rls.theta
        j = self.joint_index
        identified = np.where(self._trusted, theta[10 + 3 * np.arange(len(j))], 0.0)
        coulomb = np.maximum(self.model.friction[j] + identified, 0.0)
        return coulomb * (1.0 - np.abs(np.tanh(qd / self.settings.friction_smoothing)))

    def _observer_step(
        self, t: float, r: np.ndarray, qd: np.ndarray, unseen: np.ndarray, inflation: float = 1.0
    ) -> list[HealthEvent]:
        """One sample of the observer's output ``r [J]`` (N·m) at speeds ``qd [J]`` (rad/s), with ``unseen [J]``
        (N·m) the bound on r's error from a long step (lost samples: the effort between them was not seen) and
        ``inflation`` the factor on r's noise variance just after the observer restarted."""
        s = self.settings
        spread = self.observer_spread.std()
        sigma = np.sqrt(inflation * spread**2 + self._static_friction(qd) ** 2 + unseen**2)
        z = r / sigma
        self._last_r = r
        h = self._z_observer
        ep = self._episode
        warm = self.samples > 400 and self.observer_spread.samples > 100
        over = np.abs(z) > h
        self._over_run = np.where(over, self._over_run + 1, 0)
        if ep is None:
            weight = 1.0 - math.exp(-self._dt / s.noise_window_s)
            # near rest r holds static friction, normalised separately (`_static_friction`)
            # and after a long step r holds what the samples did not show, not noise
            self.observer_spread.update(
                r, weight=weight, mask=(np.abs(qd) >= s.min_speed) & (unseen < spread) & (inflation < 1.1)
            )
            if warm and np.any(self._over_run >= s.confirm_samples):
                return self._open_episode(t, r, z, over)
            return []
        # An episode is open: track it, decide what it is, close it when the torque has gone.
        ep.joints |= set(np.flatnonzero(over).tolist())
        bigger = np.abs(r) > np.abs(ep.peak)
        ep.peak = np.where(bigger, r, ep.peak)
        ep.peak_z = max(ep.peak_z, float(np.abs(z).max()))
        out: list[HealthEvent] = []
        if not ep.persistent and t - ep.onset > s.persistent_s:
            ep.persistent = True
            ep.mass_before = self.identifier.payload_estimate().mass
            ep.bias_before = self.identifier.rls.theta[10 + 3 * np.arange(len(self.joint_index)) + 2].copy()
            self.identifier.forget_payload()
            ep.check_at = t + max(2.0, 4.0 * s.persistent_s)
        if ep.persistent and t >= ep.check_at:
            ep.check_at = math.inf
            out += self._explain_persistent(t, ep)
        if np.all(np.abs(z) < 0.5 * h):
            ep.quiet_since = t if ep.quiet_since is None else ep.quiet_since
            if t - ep.quiet_since >= 5.0 * self._dt:
                k = int(np.argmax(np.abs(ep.peak)))
                self.last_episode = {
                    "onset_s": ep.onset,
                    "end_s": ep.quiet_since,
                    "duration_s": ep.quiet_since - ep.onset,
                    "joints": [self.joint_names[j] for j in sorted(ep.joints, key=lambda j: -abs(ep.peak[j]))],
                    "peak_nm": float(abs(ep.peak[k])),
                    "peak_z": ep.peak_z,
                    "explained_as": ep.explained_as,
                }
                self._episode = None
        else:
            ep.quiet_since = None
        return out

    def _open_episode(self, t: float, r: np.ndarray, z: np.ndarray, over: np.ndarray) -> list[HealthEvent]:
        """An external torque ``r [J]`` (N·m, normalised ``z``) confirmed above threshold on the joints ``over``."""
        joints = set(np.flatnonzero(over).tolist())
        self._episode = _Episode(onset=t, joints=joints, peak=r.copy(), peak_z=float(np.abs(z).max()))
        k = int(np.argmax(np.abs(z)))
        return [self._event("collision", [k], float(abs(r[k])), "N·m", t, t, float(abs(z[k])),
                            f"collision or contact on {self.joint_names[k]}: {abs(r[k]):.1f} N·m external torque")]  # fmt: skip

    def _explain_persistent(self, t: float, ep: _Episode) -> list[HealthEvent]:
        events = self._explanation(t, ep)
        ep.explained_as = events[0].kind if events else "contact"
        return events

    def _explanation(self, t: float, ep: _Episode) -> list[HealthEvent]:
        s = self.settings
        payload = self.identifier.payload_estimate()
        change = payload.mass - ep.mass_before
        order = sorted(ep.joints, key=lambda k: -abs(ep.peak[k]))
        if abs(change) >= s.min_payload_kg and payload.mass_ci < 0.5 * abs(change):
            self._adopt_payload()
            return [
                self._event(
                    "payload_change",
                    order,
                    change,
                    "kg",
                    ep.onset,
                    t,
                    ep.peak_z,
                    f"payload on the {payload.link} changed by {change:+.2f} kg (now {payload.mass:.2f} ± "
                    f"{payload.mass_ci:.2f} kg at {tuple(round(c, 3) for c in payload.com)} m)",
                    {"mass_kg": payload.mass, "mass_ci_kg": payload.mass_ci, "com_m": list(payload.com)},
                )
            ]
        bias = self.identifier.rls.theta[10 + 3 * np.arange(len(self.joint_index)) + 2]
        moved = bias - ep.bias_before
        k = int(np.argmax(np.abs(moved)))
        if abs(moved[k]) >= s.min_bias:
            self._bias_flagged[k] = True
            return [
                self._event(
                    "torque_sensor_bias",
                    [k],
                    float(moved[k]),
                    "N·m",
                    ep.onset,
                    t,
                    ep.peak_z,
                    f"{self.joint_names[k]} torque sensor reads {moved[k]:+.2f} N·m off",
                )  # fmt: skip
            ]
        k = order[0]
        return [
            self._event(
                "contact",
                order,
                float(abs(ep.peak[k])),
                "N·m",
                ep.onset,
                t,
                ep.peak_z,
                f"lasting external torque on {self.joint_names[k]}: {abs(ep.peak[k]):.1f} N·m",
            )  # fmt: skip
        ]

    def _adopt_payload(self) -> None:
        """Give the observer's model the identified payload (it then stops reporting it as external torque)."""
        theta = self.identifier.rls.theta[:10]
        self._adopted_mass = float(theta[0])
        tree = self.tree
        mass = tree.mass.copy()
        first = tree.first_moment.copy()
        inertia = tree.inertia_origin.copy()
        b = self.payload_body
        mass[b] += theta[0]
        first[b] += theta[1:4]
        i_o = np.array([[theta[4], theta[5], theta[6]], [theta[5], theta[7], theta[8]], [theta[6], theta[8], theta[9]]])
        inertia[b] += i_o
        loaded = ArticulatedTree(
            ndof=tree.ndof,
            parent=tree.parent,
            joint_type=tree.joint_type,
            parent_rotation=tree.parent_rotation,
            parent_translation=tree.parent_translation,
            mass=mass,
            first_moment=first,
            inertia_origin=inertia,
            gravity=tree.gravity,
            link_body=tree.link_body,
            link_in_body=tree.link_in_body,
            depth=tree.depth,
        )
        self.observer.set_dynamics(RigidBodyDynamics(loaded, armature=self.model.armature))

    # ---- identification --------------------------------------------------------------------------------------
    def _identification_due(
        self, t: np.ndarray, q: np.ndarray, qd: np.ndarray, tau: np.ndarray
    ) -> _IdentificationBatch | None:
        """Collect the samples whose centred velocity fit is complete (they lag ``_FIT_HALF`` samples), at most
        ``_IDENTIFY_HZ`` a second (identification tracks changes over tens of seconds); once they span
        ``_IDENTIFY_BATCH_S`` they are returned as one batch (the dynamics cost per call, not per sample)."""
        width = 2 * _FIT_HALF + 1
        if self._recent is not None:  # this call's windows reach back into the last samples
            t_all, q_all, qd_all, tau_all = (
                np.concatenate([old, new]) for old, new in zip(self._recent, (t, q, qd, tau), strict=True)
            )
        else:
            t_all, q_all, qd_all, tau_all = t, q, qd, tau
        before = len(t_all) - len(t)
        # A sample ends a full window once 2 _FIT_HALF samples precede it; at most _IDENTIFY_HZ windows a second.
        ends = []
        next_identify = self._next_identify
        for i, ti in enumerate(t.tolist(), start=before):
            if i >= width - 1 and ti >= next_identify:
                next_identify = ti + 1.0 / _IDENTIFY_HZ
                ends.append(i)
        self._next_identify = next_identify
        keep = slice(max(0, len(t_all) - (width - 1)), None)
        self._recent = (t_all[keep].copy(), q_all[keep].copy(), qd_all[keep].copy(), tau_all[keep].copy())
        if ends:
            end = np.array(ends)
            rows = end[:, None] + np.arange(1 - width, 1)  # [k, W] sample indices of each window
            centre = end - _FIT_HALF
            self._centres.append((t_all[rows], q_all[centre], qd_all[centre], tau_all[centre], qd_all[rows]))
        if not self._centres or self._centres[-1][0][-1, _FIT_HALF] - self._centres[0][0][0, _FIT_HALF] < (
            _IDENTIFY_BATCH_S
        ):
            return None
        windows, self._centres = self._centres, []
        ep = self._episode
        if ep is not None and not ep.persistent:
            return None  # a transient external torque is not the model's fault: do not learn from it
        window_t, q_c, qd_c, tau_c, window_qd = (np.concatenate(parts) for parts in zip(*windows, strict=True))
        return _IdentificationBatch(
            t=window_t[:, _FIT_HALF].copy(), q=q_c, qd=qd_c, tau=tau_c, window_t=window_t, window_qd=window_qd
        )

    def _identification_rows(
        self, work: _IdentificationBatch, rigid: np.ndarray, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The arguments of `ModelIdentifier.update` from the nominal inverse dynamics ``rigid [K, ndof]`` and the
        payload regressor ``rows [K, ndof, 10]`` of the batch's centres."""
        j = self.joint_index
        residual = (work.tau - rigid - self._nominal_friction(work.qd))[:, j]
        phi = self.identifier.regressor(rows[:, j], work.qd[:, j])
        var = self.residual_spread.std() ** 2 * self.residual_spread.variance_inflation()
        step = np.full(len(work.t), 1.0 / _IDENTIFY_HZ)
        return phi, residual, var, work.qd[:, j], step

    def _identification_learned(self, work: _IdentificationBatch, innovation: np.ndarray) -> None:
        """The residual spread learns from the innovations ``[K, J]`` (N·m) outside episodes."""
        if self._episode is None:
            weight = 1.0 - math.exp(-1.0 / (_IDENTIFY_HZ * self.settings.noise_window_s))
            moving = np.abs(work.qd[:, self.joint_index]) >= self.settings.min_speed
            for k in range(len(work.t)):  # resting joints' residuals hold static friction, not noise
                self.residual_spread.update(innovation[k], weight=weight, mask=moving[k])

    def _nominal_friction(self, qd: np.ndarray) -> np.ndarray:
        m = self.model
        return m.damping * qd + m.friction * np.tanh(qd / self.settings.friction_smoothing)

    def _ci_inflation(self) -> np.ndarray:
        return np.sqrt(self.residual_spread.variance_inflation())

    def _slow_checks(self, t: float) -> list[HealthEvent]:
        s = self.settings
        out: list[HealthEvent] = []
        if self.samples < 1000:
            return out
        payload = self.payload()
        change = payload.mass - self._adopted_mass
        if (
            self._episode is None
            and payload.identifiable
            and abs(change) >= s.min_payload_kg
            and payload.mass_ci < 0.5 * abs(change)
        ):
            # The robot carries something its model does not (from the start, or added slowly): say so once and
            # give it to the observer, which would otherwise report it as a lasting external torque.
            self._adopt_payload()
            out.append(
                self._event(
                    "payload_change",
                    [],
                    change,
                    "kg",
                    t,
                    t,
                    1.0,
                    f"payload on the {payload.link}: {payload.mass:.2f} ± {payload.mass_ci:.2f} kg "
                    f"({change:+.2f} kg against the model) at {tuple(round(c, 3) for c in payload.com)} m",
                    {"mass_kg": payload.mass, "mass_ci_kg": payload.mass_ci, "com_m": list(payload.com)},
                )  # fmt: skip
            )
        scale = self._z_slow / 1.959964  # from 95 % half-widths to the false-alarm-budget threshold
        for k, f in enumerate(self.identifier.friction(self._ci_inflation())):
            if not f.identifiable or not math.isfinite(f.ratio):
                continue
            low = f.ratio - scale * f.ratio_ci
            if not self._friction_flagged[k] and low > s.wear_alarm_ratio:
                self._friction_flagged[k] = True
                out.append(
                    self._event(
                        "friction_rise",
                        [k],
                        f.ratio,
                        "ratio",
                        t,
                        t,
                        1.0,
                        f"{f.joint} friction {100 * (f.ratio - 1):+.0f} % over nominal "
                        f"({f.ratio:.2f} ± {f.ratio_ci:.2f} x at {f.reference_speed:.2f} rad/s)",
                        {"coulomb_nm": f.coulomb, "viscous_nms_per_rad": f.viscous},
                    )  # fmt: skip
                )
            elif self._friction_flagged[k] and f.ratio + scale * f.ratio_ci < s.wear_alarm_ratio:
                self._friction_flagged[k] = False
            if self._episode is None and not self._bias_flagged[k] and abs(f.bias) - scale * f.bias_ci > s.min_bias:
                self._bias_flagged[k] = True
                out.append(
                    self._event(
                        "torque_sensor_bias",
                        [k],
                        f.bias,
                        "N·m",
                        t,
                        t,
                        1.0,
                        f"{f.joint} torque sensor reads {f.bias:+.2f} N·m off",
                    )  # fmt: skip
                )
        return out

    # ---- saturation and encoders -------------------------------------------------------------------------------
    def _saturation_step(self, t: float, tau: np.ndarray) -> list[HealthEvent]:
        s = self.settings
        limit = self.model.effort_limit[self.joint_index]
        at_limit = np.isfinite(limit) & (np.abs(tau) >= s.saturation_ratio * limit)
        out = []
        for k in np.flatnonzero(at_limit):
            if math.isnan(self._saturated_since[k]):
                self._saturated_since[k] = t
            elif not self._saturation_flagged[k] and t - self._saturated_since[k] >= s.saturation_min_s:
                self._saturation_flagged[k] = True
                out.append(
                    self._event(
                        "drive_saturation",
                        [int(k)],
                        float(abs(tau[k])),
                        "N·m",
                        self._saturated_since[k],
                        t,
                        1.0,
                        f"{self.joint_names[k]} drive at its {limit[k]:g} N·m limit",
                    )  # fmt: skip
                )
        released = ~at_limit
        self._saturated_since[released] = math.nan
        self._saturation_flagged[released] = False
        return out

    def _encoder_checks(self, t: np.ndarray, q: np.ndarray, qd: np.ndarray) -> list[HealthEvent]:
        s = self.settings
        out: list[HealthEvent] = []
        if self._last_q is not None and self._last_t_enc is not None and self._glitch_pending is None:
            # Nearly always nothing happens: check all samples at once and step one by one only if something may.
            prev_t = np.concatenate([[self._last_t_enc], t[:-1]])
            prev_q = np.concatenate([self._last_q[None], q[:-1]])
            prev_qd = np.concatenate([self._last_qd[None], qd[:-1]])
            h = t - prev_t
            off = q - (prev_q + 0.5 * (prev_qd + qd) * h[:, None])
            big = (np.abs(off) > s.encoder_jump) & (h <= 3.0 * self._dt)[:, None]
            stuck = (q == prev_q) & (np.abs(qd) > s.min_speed)
            if not (big.any() or stuck.any()):
                self._stuck_since[:] = math.nan
                self._stuck_flagged[:] = False
                self._last_q, self._last_qd, self._last_t_enc = q[-1].copy(), qd[-1].copy(), float(t[-1])
                return out
        for i in range(len(t)):
            ti = float(t[i])
            if self._last_q is not None and self._last_t_enc is not None:
                h = ti - self._last_t_enc
                predicted = self._last_q + 0.5 * (self._last_qd + qd[i]) * h
                off = q[i] - predicted
                if self._glitch_pending is not None:
                    t0, k, size, before = self._glitch_pending
                    self._glitch_pending = None
                    back = abs(q[i][k] - (before[k] + qd[i][k] * (ti - t0))) < 0.5 * s.encoder_jump
                    out.append(
                        self._event(
                            "encoder_glitch",
                            [k],
                            size,
                            "rad",
                            t0,
                            ti,
                            1.0,
                            f"{self.joint_names[k]} encoder jumped {size:+.4f} rad "
                            f"({'and came back' if back else 'and stayed'})",
                            {"returned": bool(back)},
                        )  # fmt: skip
                    )
                # Across a gap (lost samples) the prediction is too coarse to tell a glitch: check regular steps only.
                big = np.abs(off) > s.encoder_jump if h <= 3.0 * self._dt else np.zeros(len(off), dtype=bool)
                if np.any(big) and self._glitch_pending is None:
                    k = int(np.argmax(np.abs(off)))
                    self._glitch_pending = (ti, k, float(off[k]), self._last_q.copy())
                same = q[i] == self._last_q
                moving = np.abs(qd[i]) > s.min_speed
                stuck = same & moving
                self._stuck_since[~stuck] = math.nan
                self._stuck_flagged[~stuck] = False
                for k in np.flatnonzero(stuck):
                    if math.isnan(self._stuck_since[k]):
                        self._stuck_since[k] = self._last_t_enc
                    elif not self._stuck_flagged[k] and ti - self._stuck_since[k] >= s.stuck_s:
                        self._stuck_flagged[k] = True
                        frozen = ti - self._stuck_since[k]
                        out.append(
                            self._event(
                                "encoder_stuck",
                                [int(k)],
                                frozen,
                                "s",
                                self._stuck_since[k],
                                ti,
                                1.0,
                                f"{self.joint_names[k]} encoder frozen at {q[i][k]:.4f} rad while moving "
                                f"at {qd[i][k]:.2f} rad/s",
                            )  # fmt: skip
                        )
            self._last_q, self._last_qd, self._last_t_enc = q[i].copy(), qd[i].copy(), ti
        return out

    # ---- trends ---------------------------------------------------------------------------------------------------
    def _power_and_cycles(self, t: np.ndarray, q: np.ndarray, qd: np.ndarray, tau: np.ndarray) -> None:
        h = np.full(len(t), self._dt)
        self._power += (np.abs(tau * qd) * h[:, None]).sum(axis=0)
        self._power_time += float(h.sum())
        for i in range(len(t)):
            if t[i] - self._last_decimated >= 0.1:
                self._last_decimated = float(t[i])
                self._decimated.append((float(t[i]), q[i].copy()))

    def _trend_step(self, t: float) -> list[HealthEvent]:
        s = self.settings
        if self._next_trend is None:
            self._next_trend = t + s.trend_interval_s
            return []
        if t < self._next_trend:
            return []
        self._next_trend = t + s.trend_interval_s
        if len(self._decimated) >= 64:
            times = np.array([d[0] for d in self._decimated])
            qs = np.stack([d[1] for d in self._decimated])
            self._period = cycle_period(times, qs)
        mean_power = self._power / max(self._power_time, 1e-9)
        self._power[:] = 0.0
        self._power_time = 0.0
        t_h = (self.epoch_unix_s + t) / 3600.0
        for k, f in enumerate(self.identifier.friction(self._ci_inflation())):
            energy = float(mean_power[k] * self._period) if self._period else None
            if energy is not None:
                self._energy[f.joint] = energy
            if f.identifiable:
                self.trend.add(t_h, f.joint, f.ratio, f.ratio_ci, energy)
        if self.trend.write_error:
            self._note(self.trend.write_error)
        return self._trend_checks(t, t_h)

    def _trend_checks(self, t: float, t_h: float) -> list[HealthEvent]:
        """Wear from the trend: the fitted line's value now, confidently above ``wear_alarm_ratio``."""
        s = self.settings
        z = exceedance_threshold(
            false_alarm_hours=s.false_alarm_hours,
            looks_per_second=1.0 / s.trend_interval_s,
            channels=len(self.joint_index),
            share=_SHARES["identification"] / 2.0,
        )
        out = []
        for k, joint in enumerate(self.joint_names):
            f = self.trend.forecast(joint, t_h)
            if f is None or f.points < 4 or self._friction_flagged[k]:
                continue
            if f.ratio_now - z * f.ratio_now_sd > s.wear_alarm_ratio:
                self._friction_flagged[k] = True
                out.append(
                    self._event(
                        "friction_rise",
                        [k],
                        f.ratio_now,
                        "ratio",
                        t,
                        t,
                        1.0,
                        f"{joint} friction {100 * (f.ratio_now - 1):+.0f} % over nominal by its trend "
                        f"({f.ratio_now:.2f} ± {f.ratio_now_sd:.2f} x, {f.slope_per_hour:+.2f} per hour); "
                        f"{f.message}",
                        {"slope_per_hour": f.slope_per_hour, "hours_to_service": f.hours},
                    )  # fmt: skip
                )
        return out

    # ---- helpers and results ----------------------------------------------------------------------------------------
    def _event(
        self,
        kind: str,
        joints: list[int],
        magnitude: float,
        unit: str,
        t_s: float,
        detected_s: float,
        z: float,
        message: str,
        detail: dict[str, Any] | None = None,
    ) -> HealthEvent:
        looks = 3600.0 / self._dt * len(self.joint_index)
        confidence = max(0.0, 1.0 - gaussian_tail_probability(z) * looks) if z < 40 else 1.0
        return HealthEvent(
            kind=kind,
            joints=tuple(self.joint_names[k] for k in joints),
            magnitude=float(magnitude),
            unit=unit,
            t_s=float(t_s),
            detected_s=float(detected_s),
            confidence=float(confidence),
            message=message,
            detail=dict(detail or {}),
        )

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def restart_clock(self) -> None:
        """The robot restarted (its clock and sample numbering may start over): forget everything tied to the
        last sample's time — the observer's state, the velocity-fit window, pending identification, an open
        episode, encoder history — and keep what was learned (spreads, identification, trends)."""
        self.observer.reset()
        self._recent = None
        self._centres = []
        self._episode = None
        self._over_run[:] = 0
        self._last_t = None
        self._last_q = self._last_qd = self._last_t_enc = None
        self._glitch_pending = None
        self._next_check = -math.inf
        self._next_trend = None
        self._next_identify = -math.inf
        if not self._epoch_given:
            self.epoch_unix_s = None  # re-anchored to wall time at the next sample: trends keep running forward

    def external_torque(self) -> np.ndarray:
        """``[J]`` the observer's external torque estimate on each monitored joint after the last sample, N·m."""
        return self._last_r

    def friction(self) -> tuple[FrictionEstimate, ...]:
        """Identified friction and bias of every monitored joint (95 % intervals, correlation-corrected)."""
        return self.identifier.friction(self._ci_inflation())

    def payload(self) -> PayloadEstimate:
        """The identified payload on the holding link."""
        return self.identifier.payload_estimate(float(np.sqrt(self.residual_spread.variance_inflation()).max()))

    def summary(self) -> HealthSummary:
        """The monitor's state now (for dashboards, panels and the retained MQTT summary)."""
        sigma = self.observer_spread.std()
        unresolved: dict[int, str] = {}
        for e in list(self.events)[-50:]:
            for name in e.joints:
                unresolved[self.joint_names.index(name)] = e.kind
        for k in range(len(self.joint_index)):
            if not (self._friction_flagged[k] or self._bias_flagged[k] or self._stuck_flagged[k]):
                if self._episode is None or k not in self._episode.joints:
                    unresolved.pop(k, None)
        now_h = ((self.epoch_unix_s or time.time()) + (self._last_t or 0.0)) / 3600.0
        joints = tuple(
            JointHealth(
                name=f.joint,
                external_torque=float(self._last_r[k]),
                z=float(self._last_r[k] / sigma[k]),
                sigma=float(sigma[k]),
                threshold=float(self._z_observer),
                friction=f,
                forecast=self.trend.forecast(f.joint, now_h),
                state=unresolved.get(k, "ok"),
            )
            for k, f in enumerate(self.friction())
        )
        notes = list(self.notes)
        if self.samples < 1000:
            notes.append("warming up: residual spreads and identification need a few seconds of motion")
        return HealthSummary(
            t_s=float(self._last_t or 0.0),
            samples=self.samples,
            joints=joints,
            payload=self.payload(),
            events=tuple(self.events),
            cycle_period_s=self._period,
            energy_per_cycle_j=dict(self._energy),
            notes=tuple(notes),
            last_episode=None if self.last_episode is None else dict(self.last_episode),
        )
