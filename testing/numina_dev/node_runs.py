"""Running the NUMINA nodes on the tiny fixtures the way a graph would (for the ComfyUI tests)."""
from __future__ import annotations

PROMPT = "three red circles drifting on a grey background"
SEED, STEPS, CFG = 11, 4, 2.0


class NodeRuns:
    """The nodes called as ComfyUI calls them, on the tiny model and text encoder; pipelines are
    cached by (prompt, override, form) because every run is deterministic."""

    def __init__(self, comfy, tiny_model, tiny_clip) -> None:
        self.comfy, self.tiny_model, self.tiny_clip = comfy, tiny_model, tiny_clip
        self._pipelines = {}

    def cond(self, text):
        return self.comfy["CLIPTextEncode"]().encode(self.tiny_clip, text)[0]

    def latent(self, width=192, height=192, length=5):
        out = self.comfy["EmptyHunyuanLatentVideo"]().execute(width, height, length, 1)
        return out.result[0] if hasattr(out, "result") else out[0]

    def sample(self, model, prompt=PROMPT, latent=None, seed=SEED):
        return self.comfy["KSampler"]().sample(model, seed, STEPS, CFG, "euler", "simple", self.cond(prompt),
                                               self.cond(""), latent or self.latent())[0]["samples"]

    def capture(self, prompt=PROMPT, override="", latent=None, step=-1, block=-1, model=None, seed=SEED, **optional):
        return self.comfy["NuminaAttentionCapture"].execute(
            model or self.tiny_model, self.tiny_clip, self.cond(prompt), self.cond(""), latent or self.latent(), seed,
            STEPS, CFG, "euler", "simple", prompt, override, step, block, **optional).result

    def layout(self, capture, mode="default"):
        return self.comfy["NuminaLayoutInfer"].execute(capture, mode).result

    def refine(self, layout):
        return self.comfy["NuminaLayoutRefine"].execute(layout).result

    def guide(self, layout, form="auto", model=None, **optional):
        return self.comfy["NuminaCrossAttnGuide"].execute(model or self.tiny_model, layout, form, **optional).result

    def pipeline(self, prompt=PROMPT, override="circles: 5", form="auto", fresh=False):
        key = (prompt, override, form)
        if fresh or key not in self._pipelines:
            self._pipelines[key] = self._pipeline(prompt, override, form)
        return self._pipelines[key]

    def _pipeline(self, prompt, override, form):
        capture, _, _ = self.capture(prompt, override)
        layout, _, _ = self.layout(capture)
        refined, _, _ = self.refine(layout)
        model, report = self.guide(refined, form)
        return capture, layout, refined, model, report
