"""What the distillation targets carry (issue 21): how soft the trained teachers' outputs are at each temperature, and
how much the attention-map targets vary from window to window under each channel-matching rule. Reads the committed
teachers of a run folder (`--teachers`) and their training windows; trains nothing. Writes OUT/kd_targets.json and
OUT/REPORT.md. Not a test: it measures.

    python bench/kd_targets.py --path ../shared/data/hapt --teachers runs/hapt-standard-oc30-t15-s3 --out bench/kd-targets-hapt
"""
import json, sys, warnings
from pathlib import Path
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from fastcore.script import call_parse
from hark_nbdev.datasets import get_data
from hark_nbdev.configs import TEACHERS
from hark_nbdev.models import get_model, attention_modules
from hark_nbdev.checkpoint import model_path, load_weights
from hark_nbdev.distill import teacher_outputs
from hark_nbdev.losses import match_channels, at_normalize
from hark_nbdev.results import machine, versions, git_commit

warnings.filterwarnings('ignore', category=FutureWarning)
STUDENT_CHANNELS = 4   # LM-Att's filters at every site

def softness(logits: torch.Tensor, Ts=(1, 2, 4, 8)) -> list:
    "Per temperature: the teacher's mean top probability, the share of windows above 0.99, and the mean entropy (nats)."
    rows = []
    for T in Ts:
        p = F.softmax(logits / T, dim=1)
        top = p.max(1).values
        rows.append(dict(T=T, top_prob=top.mean().item(), share_above_099=(top > 0.99).float().mean().item(),
                         entropy=-(p * p.clamp_min(1e-12).log()).sum(1).mean().item()))
    return rows

def spread(targets: torch.Tensor) -> dict:
    "How a target (N, ...) varies across the N windows: the mean over its entries of their std across windows, beside their mean."
    t = targets.flatten(1)
    return dict(mean=t.mean().item(), std_across_windows=t.std(0).mean().item(), entries=t.shape[1])

def map_targets(channel: torch.Tensor, spatial: torch.Tensor, n=STUDENT_CHANNELS) -> dict:
    "The attention targets a student of `n` channels is asked for, per rule, and how much each varies across windows."
    avg = match_channels(channel, n, 'avg')
    res = {'channel avg': spread(avg), 'channel sorted': spread(match_channels(channel, n, 'sorted')),
           'channel at (avg, L2-normalised)': spread(at_normalize(avg)), 'channel, all teacher gates': spread(channel)}
    res['spatial'] = spread(spatial)
    res['spatial at (L2-normalised)'] = spread(at_normalize(spatial))
    return res

def load_teacher(run_dir, config, data, seed):
    "A committed teacher of `run_dir` (hapt, standard), in eval mode."
    m = get_model(config, data.n_channels, data.n_classes, data.window)
    load_weights(m, model_path(run_dir, 'hapt', 'standard', config, seed), legacy=True)
    return m.eval()

def report(b) -> str:
    "The measurements as markdown."
    soft = pd.DataFrame(b['softness'])
    soft = soft.groupby(['teacher', 'T'])[['top_prob', 'share_above_099', 'entropy']].agg(['mean', 'std']).round(3)
    soft.columns = [f'{a} ({s} over seeds)' for a, s in soft.columns]
    maps = pd.DataFrame([dict(seed=s, rule=k, **v) for s, d in b['maps'].items() for k, v in d.items()])
    maps = maps.groupby('rule', sort=False)[['entries', 'mean', 'std_across_windows']].mean().round(4)
    return '\n'.join([
        '# What the distillation targets carry', '',
        f"Command: `{b['command']}`  ", f"Commit: {b['git_commit']}  ", f"Machine: {b['machine']}  ",
        f"Data: {b['data']}  ", f"Teachers: {b['teachers']} (seeds {', '.join(map(str, b['seeds']))})", '',
        '## Softness of the teachers\' outputs on the training windows', '',
        'Mean top probability of softmax(logits / T), the share of windows whose top probability exceeds 0.99, and the mean',
        'entropy (nats; a uniform prediction over the classes has ln K). At a top probability near 1 the KD term is nearly a',
        'second cross-entropy.', '', soft.to_markdown(), '',
        '## Attention targets of OM-Att at conv4, for a 4-channel student', '',
        'For each rule, the target the student is asked for: its mean over windows and entries, and the std across windows',
        'of each entry, averaged over the entries (so 0 means the same target for every window). Mean over the seeds\' teachers.',
        '', maps.to_markdown(), ''])

@call_parse
def main(path: str = None,                                   # the hapt folder (default: HARK_DATA, the cache or a download)
         teachers: str = 'runs/hapt-standard-oc30-t15-s3',   # run folder with the trained OM and OM-Att teachers
         seeds: str = '0,1,2',                               # teacher seeds to read
         threads: int = 2,                                   # torch threads
         out: str = 'bench/kd-targets-hapt'):                # output folder
    "Measure the softness of the teachers' outputs and the window-to-window variation of the attention targets."
    torch.set_num_threads(threads)
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    data, seeds = get_data('hapt', path=path), [int(s) for s in seeds.split(',')]
    m, c = machine(), git_commit()
    b = dict(command=' '.join(['python bench/kd_targets.py'] + sys.argv[1:]), git_commit=c[0] + (' (dirty)' if c[1] else ''),
             machine=f"{m['cpu']}, {m['cpu_count']} cores", versions=versions(), teachers=teachers, seeds=seeds,
             data=f"hapt standard: {len(data.dls.train.dataset)} training windows of {data.window} x {data.n_channels}",
             softness=[], maps={})
    for s in seeds:
        for t in TEACHERS:
            teacher = load_teacher(teachers, t, data, s)
            mods = attention_modules(teacher) if t == 'OM-Att' else None
            logits, maps = teacher_outputs(teacher, data.dls.train, mods)
            b['softness'] += [dict(teacher=t, seed=s, **r) for r in softness(logits)]
            if mods:
                b['maps'][s] = map_targets(*maps['conv4'])
            print(t, s, flush=True)
    (out/'kd_targets.json').write_text(json.dumps(b, indent=1, default=str))
    (out/'REPORT.md').write_text(report(b))
    print(report(b))
