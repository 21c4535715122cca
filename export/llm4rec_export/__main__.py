"""Command line: python -m llm4rec_export {convert-movielens,bundle,synth-bundle,validate} ..."""
from __future__ import annotations

import argparse
import json
import sys
import warnings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m llm4rec_export",
                                description="Train and export LLM4Rec model bundles (docs/BUNDLE.md).")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("convert-movielens", help="MovieLens-100K (+ media) -> generic dataset format")
    c.add_argument("--ml100k", required=True, help="folder with u.data, u.item, u.user, u.genre")
    c.add_argument("--media", help="ml-100k-media folder (posters/, items_extra.jsonl)")
    c.add_argument("--out", required=True, help="dataset folder to write")
    c.add_argument("--images", choices=["copy", "symlink", "none"], default="copy")

    b = sub.add_parser("bundle", help="train on a generic-format dataset and write a model bundle")
    b.add_argument("--data", required=True, help="generic-format dataset folder")
    b.add_argument("--out", required=True, help="bundle folder to write (models/NAME/VERSION)")
    b.add_argument("--name", help="bundle name (default: NAME of an output path .../NAME/VERSION, else the dataset's name)")
    b.add_argument("--version", help="bundle version (default: VERSION of an output path .../NAME/VERSION, else 1)")
    b.add_argument("--max-epochs", type=int, default=300,
                   help="recommender epochs at most; early stopping on validation ends sooner (default 300)")
    b.add_argument("--batch", type=int, default=32, help="sequence windows per batch (default 32)")
    b.add_argument("--lr", type=float, default=2e-3)
    b.add_argument("--stage2-lr-scale", type=float, default=0.0,
                   help="> 0: train in two stages, the model and id_only continuing from one ID-only run per seed "
                        "at this share of --lr (a paired comparison of what content adds); 0 (default): each from scratch")
    b.add_argument("--dim-small", type=int, default=64, help="width of item tokens, fusion and generator (default 64)")
    b.add_argument("--fusion-layers", type=int, default=2)
    b.add_argument("--gen-layers", type=int, default=2)
    b.add_argument("--gen-heads", type=int, default=2)
    b.add_argument("--max-history", type=int, default=100)
    b.add_argument("--max-context", type=int, default=10)
    b.add_argument("--dropout", type=float, default=0.2)
    b.add_argument("--adversarial-weight", type=float, default=0.0,
                   help="gradient-reversal weight of a gender adversary on user_state; 0 = off (default 0)")
    b.add_argument("--ips", dest="ips", action="store_true", help="weight the training loss by inverse propensity")
    b.add_argument("--ips-power", type=float, default=0.5)
    b.add_argument("--ips-max-weight", type=float, default=10.0)
    b.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    b.add_argument("--seeds", type=int, default=3, help="seeds per trained variant (default 3)")
    b.add_argument("--eval-every", type=int, default=2, help="epochs between validations (default 2)")
    b.add_argument("--patience", type=int, default=5, help="validations without improvement before stopping (default 5)")
    b.add_argument("--jobs", type=int, default=0, help="parallel training processes (default: one per core)")
    b.add_argument("--image-epochs", type=int, default=10)
    b.add_argument("--image-width", type=int, default=16, help="CNN base width (default 16)")
    b.add_argument("--image-mix", type=float, default=0.25,
                   help="weight of the image embedding in the item content embedding")
    b.add_argument("--audio-epochs", type=int, default=30)
    b.add_argument("--audio-phrases", type=int, default=240)
    b.add_argument("--no-ablations", dest="ablations", action="store_false",
                   help="skip the ablations and baselines (faster; the report then has the model only)")
    b.add_argument("--ship-text", dest="ship_text", action="store_true", default=None,
                   help="write item text into the bundle's items.jsonl (default: dataset.json's ship_text)")
    b.add_argument("--no-ship-text", dest="ship_text", action="store_false")
    b.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    b.add_argument("--no-resume", dest="resume", action="store_false",
                   help="train from scratch: neither reuse nor continue runs checkpointed in the cache "
                        "($LLM4REC_CACHE/runs, default ~/.cache/llm4rec/runs)")
    b.add_argument("--train-until", dest="train_until", metavar="T",
                   help="train only on interactions before a global time cutoff: a fraction in (0, 1) of the "
                        "interactions by time (0.8: the last 20%% are left out) or a Unix timestamp; recorded in "
                        "the manifest's data.train_until")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="advanced training option (TrainConfig field), e.g. --set p_modality=0.2")

    s = sub.add_parser("synth-bundle", help="a bundle of N synthetic items with random weights (cost against catalog size)")
    s.add_argument("--items", type=int, required=True, help="catalog size N")
    s.add_argument("--out", required=True, help="bundle folder to write (emptied first)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--name", help="bundle name (default synthetic-N)")

    v = sub.add_parser("validate", help="check a bundle against its manifest and golden files")
    v.add_argument("bundle")
    v.add_argument("--no-golden", action="store_true")

    a = p.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if a.cmd == "convert-movielens":
        from .movielens import convert

        print(json.dumps(convert(a.ml100k, a.media, a.out, a.images)))
        return 0
    if a.cmd == "synth-bundle":
        from .synth import build as synth_build

        synth_build(a.out, a.items, seed=a.seed, name=a.name)
        return 0
    if a.cmd == "validate":
        from .validate import BundleError, validate

        try:
            print(json.dumps(validate(a.bundle, run_golden=not a.no_golden)))
        except BundleError as e:
            print(f"validate: {e}", file=sys.stderr)
            return 1
        return 0
    from .bundle import BundleArgs, build

    extra = {}
    for kv in a.set:
        k, _, val = kv.partition("=")
        try:
            extra[k] = json.loads(val)
        except json.JSONDecodeError:
            extra[k] = val
    args = BundleArgs(data=a.data, out=a.out, name=a.name, version=a.version, max_epochs=a.max_epochs, batch=a.batch,
                      lr=a.lr, stage2_lr_scale=a.stage2_lr_scale, dim_small=a.dim_small, fusion_layers=a.fusion_layers, gen_layers=a.gen_layers,
                      gen_heads=a.gen_heads, max_history=a.max_history,
                      max_context=a.max_context, dropout=a.dropout, adversarial_weight=a.adversarial_weight, ips=a.ips,
                      ips_power=a.ips_power, ips_max_weight=a.ips_max_weight, seed=a.seed, seeds=a.seeds,
                      eval_every=a.eval_every, patience=a.patience, jobs=a.jobs,
                      image_epochs=a.image_epochs, image_width=a.image_width, image_mix=a.image_mix,
                      audio_epochs=a.audio_epochs, audio_phrases=a.audio_phrases, ablations=a.ablations,
                      ship_text=a.ship_text, threads=a.threads, resume=a.resume, extra=extra,
                      train_until=a.train_until)
    build(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
