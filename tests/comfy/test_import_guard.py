"""A ComfyUI whose API differs must not be taken down by the pack: one clear error, no nodes."""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_pack_import_fails_soft_when_comfy_api_is_missing():
    script = textwrap.dedent(f"""
        import importlib.util, logging, sys
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        sys.modules["comfy_api"] = None          # an older ComfyUI without the V3 API
        sys.modules["comfy_api.latest"] = None
        spec = importlib.util.spec_from_file_location("numina_pack", {os.path.join(ROOT, "__init__.py")!r},
                                                      submodule_search_locations=[{ROOT!r}])
        module = importlib.util.module_from_spec(spec)
        sys.modules["numina_pack"] = module
        spec.loader.exec_module(module)
        print("MAPPINGS", module.NODE_CLASS_MAPPINGS)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "MAPPINGS {}" in done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR") and "[NUMINA]" in line]
    assert len(errors) == 1, done.stderr
    assert "comfy_api" in errors[0] and "ComfyUI itself runs on" in errors[0]
