"""The CPU demo: runs example_workflows/numina_cpu_demo.json through ComfyUI's own executor.

Writes the plain frames, the NUMINA-guided frames, an animation and both layout previews
(inferred and refined) into one folder, and prints it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from numina_dev import ROOT, comfy_runtime

WORKFLOW = os.path.join(ROOT, "example_workflows", "numina_cpu_demo.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=os.path.join(ROOT, "demo_output"), help="folder for everything the demo writes")
    parser.add_argument("--workflow", default=WORKFLOW, help="a UI-format workflow JSON to run")
    args = parser.parse_args()

    comfy_runtime.bootstrap()
    import folder_paths

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    folder_paths.set_output_directory(out)
    comfy_runtime.load_custom_nodes()
    from scripts import workflow_api

    with open(args.workflow) as f:
        workflow = json.load(f)
    graph = workflow_api.ui_to_api(workflow, workflow_api.object_info_in_process())
    started = time.time()
    executor, server = comfy_runtime.execute_graph(graph)
    if not executor.success:
        sys.exit(f"demo failed: {comfy_runtime.execution_error(server)}")
    written = []
    for node_id, outputs in executor.history_result["outputs"].items():
        for key in ("images", "animated", "video"):
            for item in outputs.get(key, []) or []:
                if isinstance(item, dict) and "filename" in item:
                    written.append(os.path.join(item.get("subfolder", ""), item["filename"]))
    print(f"NUMINA demo: ran {os.path.basename(args.workflow)} in {time.time() - started:.1f} s "
          f"({len(written)} files)")
    for name in sorted(written):
        print(f"  {name}")
    for node_id, outputs in executor.history_result["outputs"].items():     # what the judges said
        if graph.get(node_id, {}).get("class_type") in ("NuminaCountCheck", "NuminaCheckedSampler"):
            title = graph[node_id].get("_meta", {}).get("title", graph[node_id]["class_type"])
            print(f"{title}:\n  " + "\n  ".join((outputs.get("text") or [""])[0].splitlines()))
    print(f"NUMINA demo output: {out}")


if __name__ == "__main__":
    main()
