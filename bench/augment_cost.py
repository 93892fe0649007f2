"""What augmentation costs a training epoch (issue 17): with `augment` on, every training batch is transformed, and a
distilled student's teacher must run on every batch (its stored outputs only hold for unchanged windows). Times one
plain and one distilled configuration with and without augmentation, through the package (`train_config`), in one
run. Writes OUT/augment_cost.json and OUT/REPORT.md. Not a test: it measures.

    python bench/augment_cost.py --path ../shared/data/hapt --out bench/augment-cost-hapt

Run it alone on an idle machine: two PyTorch processes on 2 cores make every number here worthless.
"""
import json, math, sys, tempfile, warnings
from pathlib import Path
import pandas as pd
import torch
from fastcore.script import call_parse
from hark_nbdev.datasets import get_data
from hark_nbdev.configs import CONFIGS, train_config
from hark_nbdev.models import get_model
from hark_nbdev.checkpoint import model_path, load_weights
from hark_nbdev.results import machine, versions, git_commit

warnings.filterwarnings('ignore', category=FutureWarning)
AUGMENT = 'jitter+scale+rotate+shift'

def epoch_seconds(config, data, teacher, epochs, augment, cache_dir) -> dict:
    "Seconds per training epoch of one fit (the teacher-output pass, when there is one, counted apart)."
    t = CONFIGS[config].teacher
    cache = None if t is None else str(Path(cache_dir)/f'{t}.outputs.pt')
    _, info = train_config(config, data, teacher=teacher if t else None, epochs=epochs, seed=0, quiet=True, augment=augment, teacher_cache=cache)
    ts = 0. if math.isnan(info['teacher_seconds']) else info['teacher_seconds']
    return dict(config=config, augment=augment or 'none', epoch_seconds=(info['train_seconds'] - ts) / info['epochs'], teacher_seconds=ts)

def report(b) -> str:
    "The measurements as markdown."
    df = pd.DataFrame(b['fits']).pivot(index='config', columns='augment', values='epoch_seconds')
    df['augmented / plain'] = df[AUGMENT] / df['none']
    return '\n'.join(['# What augmentation costs an epoch', '',
                      f"Command: `{b['command']}`  ", f"Commit: {b['git_commit']}  ", f"Machine: {b['machine']}, {b['threads']} threads  ",
                      f"Data: {b['data']}; {b['epochs']} epochs per fit, seed 0; augmentation `{AUGMENT}`", '',
                      'Seconds per training epoch (validation pass included; the teacher-output pass of a fit without augmentation '
                      'is counted apart). With augmentation the teacher runs on every training batch.', '',
                      df.round(3).to_markdown(), ''])

@call_parse
def main(path: str = None,                                   # the hapt folder (default: HARK_DATA, the cache or a download)
         teachers: str = 'runs/hapt-standard-oc30-t15-s3',   # run folder with a trained OM (seed 0)
         epochs: int = 2,                                    # epochs of each fit
         threads: int = 2,                                   # torch threads
         out: str = 'bench/augment-cost-hapt'):              # output folder
    "Time LM and RB-KD epochs with and without augmentation."
    torch.set_num_threads(threads)
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    data = get_data('hapt', path=path)
    om = get_model('OM', data.n_channels, data.n_classes, data.window)
    load_weights(om, model_path(teachers, 'hapt', 'standard', 'OM', 0), legacy=True)
    m, c = machine(), git_commit()
    b = dict(command=' '.join(['python bench/augment_cost.py'] + sys.argv[1:]), git_commit=c[0] + (' (dirty)' if c[1] else ''),
             machine=f"{m['cpu']}, {m['cpu_count']} cores", threads=threads, versions=versions(), epochs=epochs,
             data=f"hapt standard: {len(data.dls.train.dataset)} training windows of {data.window} x {data.n_channels}", fits=[])
    with tempfile.TemporaryDirectory() as d:
        epoch_seconds('LM', data, om, 1, None, d)   # warm-up
        for config in ('LM', 'RB-KD'):
            for augment in (None, AUGMENT):
                b['fits'].append(epoch_seconds(config, data, om, epochs, augment, d)); print(b['fits'][-1], flush=True)
    (out/'augment_cost.json').write_text(json.dumps(b, indent=1, default=str))
    (out/'REPORT.md').write_text(report(b))
    print(report(b))
