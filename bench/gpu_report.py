#!/usr/bin/env python3
"""The numbers of bench/gpu_check.sh as Markdown, from the `dgpt bench --json` files it wrote.

usage: gpu_report.py LOG_DIR   (gpt2_tp*.json, gpt2_gen_tp*.json, gloo_w*.json)

GPT-2 training rows: the simulated step and its ratio to the dense model (simulation overhead),
the solo rank's T_rank(N), MFU against the measured bf16 matmul peak (the bench's own) and
against the H200's 989 TFLOP/s dense bf16 figure, the projected NVLink step; generation rows: the
prefill and per-token decode of a solo rank; Gloo rows: every real rank's compute against its solo
rank and the projected step against the measured one.
"""
import glob
import json
import os
import sys

H200_BF16_PEAK = 989e12  # NVIDIA's dense bf16 figure for the H100/H200 SXM


def load(path):
    try:
        return json.load(open(path))
    except Exception as e:  # a step that was cut short
        print(f"\n({os.path.basename(path)}: {e})")
        return None


def training(path):
    j = load(path)
    if not j:
        return
    peak = j["peak_flops"]
    rows = j["rows"]
    dense = next((r for r in rows if r["model_type"] == "gpt"), None)
    nvlink = {p["strategy"]: p for p in j.get("projections", []) if p.get("interconnect") == "nvlink"}
    print(f"\n**{os.path.basename(path)}** ({j['device']}, {j['precision']}, {j['tokens_per_step']} tokens per step, "
          f"measured peak {peak / 1e12:.0f} TFLOP/s)\n")
    print("| strategy | N | sim ms | sim / dense | T_rank ms | T_rank / dense | MFU (measured peak) | MFU (989 TFLOP/s) "
          "| nvlink projected ms | peak mem GB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        sim = r.get("sim_ms_per_step")
        over = sim / dense["sim_ms_per_step"] if dense and sim else None
        mfu = r["rank_mfu"]
        mfu989 = mfu * peak / H200_BF16_PEAK
        proj = nvlink.get(r["strategy"], {}).get("projected_ms")
        mem = r.get("peak_memory_bytes")
        print(f"| {r['strategy']} | {r['devices']} | {sim:.2f} | {over:.3f} | {r['rank_ms']:.2f} | "
              f"{r['rank_ms_vs_dense'] if r['rank_ms_vs_dense'] is None else format(r['rank_ms_vs_dense'], '.3f')} | "
              f"{100 * mfu:.1f}% | {100 * mfu989:.1f}% | {'' if proj is None else format(proj, '.2f')} | "
              f"{'' if mem is None else format(mem / 1e9, '.2f')} |")


def generation(path):
    j = load(path)
    if not j:
        return
    print(f"\n**{os.path.basename(path)}** ({j['device']}, {j['precision']}, batch {j['batch']}, prompt {j['prompt_len']}, "
          f"{j['new_tokens']} new tokens)\n")
    print("| strategy | N | prefill ms | decode ms/token |")
    print("|---|---|---|---|")
    for r in j["rows"]:
        print(f"| {r['strategy']} | {r['devices']} | {r['prefill_ms']:.2f} | {r['decode_ms_per_token']:.3f} |")


def gloo(path):
    j = load(path)
    if not j:
        return
    print(f"\n**{os.path.basename(path)}** (real Gloo ranks on the CPU, {j.get('processes')} processes)\n")
    print("| strategy | T_rank ms (solo) | real step ms | real comm ms | real compute ms | compute / T_rank |")
    print("|---|---|---|---|---|---|")
    for r in j["rows"]:
        if "real_step_ms" not in r:
            continue
        compute = r["real_step_ms"] - r["real_comm_ms"]
        print(f"| {r['strategy']} | {r['rank_ms']:.2f} | {r['real_step_ms']:.2f} | {r['real_comm_ms']:.2f} | "
              f"{compute:.2f} | {compute / r['rank_ms']:.3f} |")
    v = j.get("validation")
    if v:
        print(f"\n(validation rows in the JSON: {len(v)})")


def main():
    d = sys.argv[1]
    for p in sorted(glob.glob(os.path.join(d, "gpt2_tp*.json"))):
        training(p)
    for p in sorted(glob.glob(os.path.join(d, "gpt2_gen_tp*.json"))):
        generation(p)
    for p in sorted(glob.glob(os.path.join(d, "gloo_w*.json"))):
        gloo(p)


if __name__ == "__main__":
    main()
