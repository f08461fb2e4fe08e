"""compare_losses.py BF16.jsonl FP8.jsonl [--after 50] [--every 10] [--tol 0.01]

Issue 3's accuracy check: at every logged step (multiples of --every) after --after, the FP8 run's loss is
within --tol (relative) of the BF16 run's. Prints a table and, last, one PASS/FAIL line."""
import json
import sys


def load(path):
    with open(path) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    opts = dict(zip(argv[::1], argv[1::1]))
    after, every, tol = int(opts.get("--after", 50)), int(opts.get("--every", 10)), float(opts.get("--tol", 0.01))
    bf16, fp8 = load(args[0]), load(args[1])
    steps = sorted(s for s in bf16 if s in fp8 and s > after and s % every == 0)
    worst = 0.0
    print(f"{'step':>6} {'bf16':>9} {'fp8':>9} {'rel diff':>9}")
    for s in steps:
        d = abs(fp8[s] - bf16[s]) / abs(bf16[s])
        worst = max(worst, d)
        print(f"{s:6d} {bf16[s]:9.4f} {fp8[s]:9.4f} {100 * d:8.2f}%")
    ok = bool(steps) and worst <= tol
    print(f"{'PASS' if ok else 'FAIL'}: {len(steps)} logged steps after {after}, worst relative difference "
          f"{100 * worst:.2f}% (limit {100 * tol:.0f}%)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
