"""Sweep settings of one configuration (distillation alpha, T, beta, channel matching; model options: dropout, attention sites) on VALIDATION macro F1.

The teachers are those a finished run saved (`RUN/models/<dataset>-<protocol>/<teacher>-seed<k>.pth`; each seed
gets the teacher it had in the matrix), so the sweep costs student trainings only. Every point is trained with the
run's schedule and epochs; rows are appended to `OUT` (a CSV) as they finish, and a restarted sweep skips the points
already there. Choose on `valid_f1`; `test_f1` is written for the record only.

    python bench/sweep.py runs/hapt-standard-oc30-s3 --config RAB-KD --seeds 2
    python bench/sweep.py runs/hapt-standard-oc30-s3 --config LM --grid "dropout=0; dropout=0.5" --seeds 2
    python bench/sweep.py runs/hapt-standard-oc30-t15-s3 --config LM-Att --grid "sites=conv1; sites=conv2+conv4" --seeds 3
    python bench/sweep.py runs/hapt-standard-oc30-t15-s3 --config RAB-KD --grid "match=sorted; match=sorted,beta=1" --seeds 3

A student whose attention sites differ from its teacher's cannot distil maps, so sweep `sites` for LM-Att or
RB-KD-Att (OM has no attention), not for RAB-KD. Students have the run's attention sites (`hark-run --sites`) unless a
point sets its own.
"""
import json, time, warnings
from pathlib import Path
import pandas as pd, torch
from fastcore.script import call_parse
from hark_nbdev.datasets import get_data
from hark_nbdev.configs import TEACHER_OF, train_config, evaluate
from hark_nbdev.results import atomic_write, ResultsStore
from hark_nbdev.experiment import Runner
from hark_nbdev.settings import RunSettings

warnings.filterwarnings('ignore', category=FutureWarning)
GRID = 'T=1; T=2; T=4; alpha=0.1; alpha=0.9; beta=0; beta=10'   # around KD_DEFAULTS, one setting at a time
KEYS = ('alpha', 'T', 'beta', 'match', 'dropout', 'sites')   # 'sites' takes conv names joined by '+', 'match' a name (avg, sorted)

def parse_grid(grid: str) -> list:
    "'T=1; alpha=0.1,T=4; sites=conv1+conv4; match=sorted' -> [{'T': 1.0}, {'alpha': 0.1, 'T': 4.0}, {'sites': ('conv1', 'conv4')}, {'match': 'sorted'}]."
    pts = []
    for p in filter(str.strip, grid.split(';')):
        kv = dict(item.split('=') for item in p.replace(' ', '').split(','))
        bad = set(kv) - set(KEYS)
        if bad: raise ValueError(f"unknown setting(s) {sorted(bad)} in {p!r}; sweepable: {KEYS}")
        pts.append({k: tuple(v.split('+')) if k == 'sites' else v if k == 'match' else float(v) for k, v in kv.items()})
    return pts

@call_parse
def main(run: str,                    # finished run folder (its run.json gives dataset, protocol, schedule and epochs)
         config: str = 'RAB-KD',      # configuration to sweep (a distilled one loads the run's teacher of each seed)
         grid: str = GRID,            # points 'key=value,key=value' separated by ';' (keys: alpha, T, beta, match, dropout, sites)
         seeds: int = 2,              # seeds per point (0..N-1)
         path: str = None,            # dataset folder (default: the run's)
         threads: int = 1,            # torch threads
         out: str = None):            # CSV to write (default RUN/sweep-CONFIG.csv)
    "Train `config` at every grid point and seed; write validation (and, for the record, test) macro F1 to a CSV."
    torch.set_num_threads(threads)
    run = Path(run); last = json.loads((run/'run.json').read_text())['runs'][-1]
    a = last.get('settings') or last['args']   # 'args': the run.json of runs before RunSettings
    out = Path(out or run/f'sweep-{config}.csv')
    rows = pd.read_csv(out).to_dict('records') if out.exists() else []
    done = {(r['point'], r['seed']) for r in rows}
    data = get_data(a['dataset'], path=path or a['path'], protocol=a['protocol'])
    runner = Runner(data, ResultsStore(run), RunSettings(a['dataset'], protocol=a['protocol'], teacher_seeds=a.get('teacher_seeds'),
                                                         sites=a.get('sites'), out=str(run)))
    def teacher_of(seed):
        "The teacher that the run's matrix gave students of `seed`, loaded from RUN/models, or None."
        name = TEACHER_OF.get(config)
        if not name: return None
        k = runner.teacher_seed(seed)
        w = runner.model_file(name, k)
        if not (w.exists() and w.with_suffix('.json').exists()):
            raise FileNotFoundError(f"no saved teacher at {w}: run the matrix (hark-run / bench/run.py) first")
        return runner.trained_teacher(name, k)[0]   # loads it (the files exist), once per teacher seed
    for pt in parse_grid(grid):
        name = ','.join(f"{k}={'+'.join(v) if k == 'sites' else v if k == 'match' else format(v, 'g')}" for k, v in pt.items())
        for s in range(seeds):
            if (name, s) in done: continue
            learn, info = train_config(config, data, teacher=teacher_of(s), epochs=a['epochs'], schedule=a.get('schedule', 'constant'),
                                       patience=a.get('patience', 10), seed=s, quiet=True, **{**runner.model_opts(config), **pt})
            ev = evaluate(learn, data)
            r = dict(config=config, point=name, seed=s, alpha=info['alpha'], T=info['T'], beta=info['beta'], match=info['match'],
                     dropout=pt.get('dropout', 0.), sites='+'.join(learn.model.sites), valid_f1=info['valid_f1'],
                     test_f1=ev['f1_macro'], pred_classes=ev['pred_classes'], epochs=info['epochs'], best_epoch=info['best_epoch'],
                     seconds=round(info['train_seconds'], 1))
            rows.append(r); print(r, flush=True)
            with atomic_write(out) as f: pd.DataFrame(rows).to_csv(f, index=False)
    df = pd.DataFrame(rows)
    print(df.groupby('point', sort=False)[['valid_f1', 'test_f1']].agg(['mean', 'std']).round(4))
