"""Sampling that stops after the reference step and finishes later, exactly.

ComfyUI's sampler leaves its state in two transforms: at the end of a run the latent is divided
by (1 - sigma) (`inverse_noise_scaling`) and mapped out of the model's latent space
(`process_latent_out`); a run that starts from a latent maps it back in and multiplies it again.
In floating point that round trip is not exact, so a run finished from the reference latent
with KSamplerAdvanced differs from the plain run in the last bits.  Here the reference pass keeps
the sampler's raw state (both transforms skipped, through object patches on a clone, as ComfyUI's
model-sampling nodes patch `model_sampling`), and the finishing run starts from that state (both
transforms skipped on the way in), so a run whose counts were right equals the plain run bit for
bit with single-step samplers such as euler, for `steps` model evaluations in all.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Optional

import torch

import comfy.model_management
import comfy.patcher_extension
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview

from ..numina_ops.records import NuminaInputError, ReferencePass, SamplingSettings
from ..numina_ops.schedule import is_exact

LATENT_RATIO_KEYS = ("downscale_ratio_spacial", "downscale_ratio_temporal")


EVALUATIONS_KEY = "numina_evaluations"
# the ui key under which NuminaSampler and NuminaCheckedSampler report the model evaluations a video
# cost, reference pass included (in /history for API clients such as benchmarks/countbench.py)
EVALUATIONS_UI_KEY = "model_evaluations"


class EvaluationCount:
    """Counts diffusion-model calls (one per model evaluation, cond and uncond batched) through
    ComfyUI's APPLY_MODEL wrapper on a clone, whatever the sampler."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, executor, *args, **kwargs):
        self.calls += 1
        return executor(*args, **kwargs)

    def counted(self, model):
        if model is None:
            return None
        clone = model.clone()
        clone.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, EVALUATIONS_KEY, self)
        return clone


def _variant(obj: Any, **methods: Callable) -> Any:
    """A shallow copy of ``obj`` whose class overrides ``methods`` (buffers stay shared)."""
    cls = type(f"Numina{type(obj).__name__}", (type(obj),), methods)
    twin = copy.copy(obj)
    twin.__class__ = cls
    return twin


def _with_raw_output(model: Any) -> Any:
    """A clone whose sampler returns its raw state (no final noise or latent-format transform)."""
    raw = model.clone()
    raw.add_object_patch("model_sampling", _variant(model.get_model_object("model_sampling"),
                                                    inverse_noise_scaling=lambda self, sigma, latent: latent))
    raw.add_object_patch("latent_format", _variant(model.get_model_object("latent_format"),
                                                   process_out=lambda self, latent: latent))
    return raw


def _from_raw_input(model: Any) -> Any:
    """A clone whose sampler starts from a raw state as it is (no latent-format or noise transform)."""
    raw = model.clone()
    raw.add_object_patch("model_sampling", _variant(model.get_model_object("model_sampling"),
                                                    noise_scaling=lambda self, sigma, noise, latent, max_denoise=False: latent))
    raw.add_object_patch("latent_format", _variant(model.get_model_object("latent_format"),
                                                   process_in=lambda self, latent: latent))
    return raw


def prepare_latent(model: Any, latent: dict) -> torch.Tensor:
    """The latent made ready for `model` exactly as the installed ComfyUI's `common_ksampler`
    does, so the capture sees the final run's token grid.  Newer ComfyUI (0.33) also passes the
    ratios an empty latent records (EmptyHunyuanLatentVideo: 8) and resizes it to the model's
    stride (Wan2.2 5B: 16); older ones (0.3.75) take no ratios."""
    import inspect
    fix = comfy.sample.fix_empty_latent_channels
    accepted = inspect.signature(fix).parameters
    ratios = {key: latent.get(key) for key in LATENT_RATIO_KEYS if key in accepted}
    return fix(model, latent["samples"], **ratios)


def sigmas_of(model: Any, settings: SamplingSettings) -> tuple[float, ...]:
    """The whole sigma schedule of a run with these settings."""
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), settings.scheduler,
                                             settings.steps)
    return tuple(float(s) for s in sigmas.detach().cpu())


def _sample(model: Any, settings: SamplingSettings, positive, negative, latent: dict, latent_image: torch.Tensor,
            start: Optional[int], stop: Optional[int], add_noise: bool, finish: bool,
            sigmas: Optional[torch.Tensor] = None) -> torch.Tensor:
    noise = (comfy.sample.prepare_noise(latent_image, settings.seed, latent.get("batch_index")) if add_noise
             else torch.zeros(latent_image.size(), dtype=latent_image.dtype, layout=latent_image.layout,
                              device="cpu"))
    return comfy.sample.sample(
        model, noise, settings.steps, settings.cfg, settings.sampler_name, settings.scheduler, positive, negative,
        latent_image, denoise=1.0, disable_noise=not add_noise, start_step=start, last_step=stop,
        force_full_denoise=finish, noise_mask=latent.get("noise_mask"), sigmas=sigmas,
        callback=latent_preview.prepare_callback(model, settings.steps),
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=settings.seed)


def reference_pass(model: Any, settings: SamplingSettings, positive, negative, latent: dict,
                   path: list[int]) -> tuple[ReferencePass, dict]:
    """The run from its noise through the schedule indices ``path`` (numina_ops/schedule.py: the
    run's own steps 0..reference_step + 1, or a few larger ones to the reference step's noise level
    and that step), ``model`` carrying the capture's patch.  Returns the raw state for the NUMINA
    sampler and the LATENT a sampler stopping there returns (KSamplerAdvanced's, on the exact path)."""
    latent_image = prepare_latent(model, latent)
    next_step = path[-1]
    exact = is_exact(path)
    # on the CPU like the schedules ComfyUI's own schedulers return; its sampler moves them to the model
    sigmas = None if exact else torch.tensor([sigmas_of(model, settings)[i] for i in path], dtype=torch.float32,
                                             device="cpu")
    raw = _sample(_with_raw_output(model), settings, positive, negative, latent, latent_image,
                  None if sigmas is not None else 0, None if sigmas is not None else next_step,
                  add_noise=True, finish=False, sigmas=sigmas)
    state = ReferencePass(settings=settings, positive=positive, negative=negative, latent=latent,
                          state=raw.detach().to("cpu"), next_step=next_step, path=tuple(path))
    reference = {k: v for k, v in latent.items() if k not in LATENT_RATIO_KEYS}   # as common_ksampler's output
    reference["samples"] = _as_latent(model, state)
    return state, reference


def _as_latent(model: Any, reference: ReferencePass) -> torch.Tensor:
    """The raw state as the LATENT a sampler stopping there returns (both transforms applied)."""
    sigma = torch.tensor(sigmas_of(model, reference.settings)[reference.next_step], dtype=torch.float32, device="cpu")
    unscaled = model.get_model_object("model_sampling").inverse_noise_scaling(sigma, reference.state)
    return model.get_model_object("latent_format").process_out(unscaled)


def finish(model: Any, reference: ReferencePass, stop: Optional[int] = None) -> torch.Tensor:
    """The run continued from the reference pass's exact state to ``stop`` (default: the end)."""
    if reference.state is None:
        raise NuminaInputError("this capture ran no reference pass (nothing to count): sample the plain run")
    s = reference.settings
    stop = s.steps if stop is None else stop
    if stop <= reference.next_step:          # nothing left to sample before the stop
        return _as_latent(model, reference)
    return _sample(_from_raw_input(model), s, reference.positive, reference.negative, reference.latent,
                   reference.state, reference.next_step, stop, add_noise=False, finish=stop >= s.steps)


def sample_segment(model: Any, reference: ReferencePass, latent_image: Optional[torch.Tensor],
                   start: int, stop: int) -> torch.Tensor:
    """Steps start..stop of the run on ``model`` as KSamplerAdvanced samples them: from the
    noise of the run's seed when ``start`` is 0, else continuing ``latent_image``."""
    s = reference.settings
    if latent_image is None:
        latent_image = prepare_latent(model, reference.latent)
    return _sample(model, s, reference.positive, reference.negative, reference.latent, latent_image,
                   start, stop, add_noise=start == 0, finish=stop >= s.steps)
