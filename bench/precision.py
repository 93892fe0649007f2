"""What bf16 mixed precision (`--precision bf16`, `configs.BF16Training`) gains on this machine (issue 16): seconds per
training epoch of each configuration through the package in float32 and in bf16, in one run at the same threads and
batch size; the dense matrix-multiply rate in both precisions; each teacher's epoch against its MAC bound at the rate
of the precision it trains in. Writes OUT/precision.json and OUT/REPORT.md. Not a test: it measures.

    python bench/precision.py --path ../shared/data/hapt --teachers runs/hapt-v1-teachers --out bench/precision-hapt

Run it alone on an idle machine: two PyTorch processes on 2 cores make every number here worthless.
"""
import json, math, warnings
from pathlib import Path
import pandas as pd
import torch
from fastcore.script import call_parse
from hark_nbdev.datasets import get_data
from hark_nbdev.configs import CONFIGS, TEACHERS, PRECISIONS, train_config
from hark_nbdev.checkpoint import load_model
from hark_nbdev.models import get_model
from hark_nbdev.profile import count_macs
from hark_nbdev.results import machine, versions, git_commit
from hark_nbdev.report import md_table
from speed import mm_gmacs   # bench/speed.py, beside this script

warnings.filterwarnings('ignore', category=FutureWarning)

def epoch_seconds(config, data, teachers, epochs, precision, seed=0) -> dict:
    "Seconds per epoch of one `train_config` fit (the teacher's outputs, computed once per fit, left out) and its last valid F1."
    t = CONFIGS[config].teacher
    _, info = train_config(config, data, teacher=teachers.get(t), epochs=epochs, seed=seed, quiet=True, precision=precision)
    ts = 0. if math.isnan(info['teacher_seconds']) else info['teacher_seconds']
    return dict(epoch_seconds=(info['train_seconds'] - ts) / info['epochs'], valid_f1=info['history'][-1]['valid_f1'])

def report(b) -> str:
    "The markdown report of a `precision.json`."
    f, mb = b['fits'], b['mac_bound']
    rows = [dict(configuration=c, **{f's/epoch {p}': round(f[c][p]['epoch_seconds'], 2) for p in PRECISIONS},
                 **{'fp32 / bf16': round(f[c]['fp32']['epoch_seconds'] / f[c]['bf16']['epoch_seconds'], 2)},
                 **{f'valid F1 {p} (last epoch)': round(100 * f[c][p]['valid_f1'], 2) for p in PRECISIONS},
                 **{f'epoch / MAC bound {p}': round(f[c][p]['epoch_seconds'] / mb[c][p], 2) if c in mb else '' for p in PRECISIONS}) for c in f]
    m = b['machine']
    return '\n'.join([
        '# bf16 mixed precision against float32 (issue 16)', '',
        f"Command: `{b['command']}`  ", f"Commit: {b['commit'][0]}{' (dirty)' if b['commit'][1] else ''}  ",
        f"Machine: {m.get('cpu')} ({m.get('cpu_capability')} kernels), {m.get('cpu_count')} cores; torch threads {b['threads']}  ",
        f"Data: hapt standard, {b['n_train']} training / {b['n_valid']} validation windows, batch 64, one-cycle  ",
        f"Dense matrix multiply (2048 x 2048 `torch.mm`, same run): **{b['mm_gmacs']['fp32']:.1f} GMAC/s in float32, "
        f"{b['mm_gmacs']['bf16']:.1f} in bf16**", '',
        "Each fit is `train_config` for the epochs given (the teacher's outputs, computed once per distilled fit, left out of "
        "its seconds per epoch), once with `precision='fp32'` and once with `'bf16'`, same seed. The valid F1 of so short a "
        "fit only shows that bf16 trains; whether it trains as well is measured on full runs (tutorials/recipe). "
        "A teacher's MAC bound is its training epoch's multiply-accumulates (3 per window and MAC of the forward pass, plus "
        "the validation pass) at the measured matrix-multiply rate of the precision it trains in.", '',
        md_table(pd.DataFrame(rows), index=False), ''])

@call_parse
def main(path:str=None,                 # the hapt folder (default: $HARK_DATA or the cache)
         teachers:str='runs/hapt-v1-teachers', # a run folder with trained OM and OM-Att of seed 0, for the distilled configurations
         configs:str='LM,RB-KD,LM-Att,RAB-KD,MM,OM,OM-Att', # configurations to time
         epochs:int=2,                   # epochs per student fit
         teacher_epochs:int=1,           # epochs per teacher fit
         out:str='bench/precision-hapt', # the report folder
        ):
    "Time every configuration's training epoch in fp32 and bf16 in one run; write OUT/precision.json and OUT/REPORT.md."
    configs = configs.split(',')
    data = get_data('hapt', path=path)
    tm = {t: load_model(teachers, t, 0) for t in TEACHERS}
    b = dict(command='python bench/precision.py ' + ' '.join(f'--{k} {v}' for k, v in dict(
                 path=path, teachers=teachers, configs=','.join(configs), epochs=epochs, teacher_epochs=teacher_epochs, out=out).items() if v is not None),
             commit=list(git_commit()), machine=machine(), versions=versions(), threads=torch.get_num_threads(),
             n_train=len(data.train), n_valid=len(data.valid))
    b['mm_gmacs'] = {p: mm_gmacs(dtype=torch.float32 if p == 'fp32' else torch.bfloat16) for p in PRECISIONS}
    macs = {c: count_macs(get_model(CONFIGS[c].model, data.n_channels, data.n_classes, data.window), data.window, data.n_channels) for c in configs}
    b['fits'] = {}
    for c in configs:
        e = teacher_epochs if c in TEACHERS else epochs
        b['fits'][c] = {p: epoch_seconds(c, data, tm, e, p) for p in PRECISIONS}
        f = b['fits'][c]; print(f"{c}: fp32 {f['fp32']['epoch_seconds']:.2f} s/epoch, bf16 {f['bf16']['epoch_seconds']:.2f}", flush=True)
    # a training epoch's MACs: forward + two backward products per training window, a forward per validation window
    b['mac_bound'] = {c: {p: (3 * macs[c] * b['n_train'] + macs[c] * b['n_valid']) / (b['mm_gmacs'][p] * 1e9) for p in PRECISIONS}
                      for c in configs if c in TEACHERS}
    outp = Path(out); outp.mkdir(parents=True, exist_ok=True)
    (outp/'precision.json').write_text(json.dumps(b, indent=1))
    (outp/'REPORT.md').write_text(report(b))
    print(report(b))
