"""Wall time of a whole `hark-run` run (issue 16's targets: the full `hapt` matrix, 3 seeds, shared teachers, in at
most 30 minutes on 2 cores; the README's main job, five students of one seed from the shipped teachers, in at most 10),
read from the run folder that the run wrote: `run.json` (start, finish, workers, threads,
machine) and `results.csv` (each row's training seconds). It measures nothing itself; the run is the measurement.
Writes OUT/matrix.json and OUT/REPORT.md.

    hark-run --dataset hapt --path ../shared/data/hapt --configs all --seeds 3 --teacher-seeds 1 --epochs 30 \
        --teacher-epochs 15 --workers 2 --out runs/hapt-standard-oc30-t15-s3-w2
    python bench/matrix_time.py runs/hapt-standard-oc30-t15-s3-w2 --out bench/matrix-hapt
    hark-run ... the same ... --precision bf16 --out runs/hapt-standard-oc30-t15-s3-w2-bf16
    python bench/matrix_time.py runs/hapt-standard-oc30-t15-s3-w2-bf16 --out bench/matrix-hapt-bf16
    hark-run --dataset hapt --path ../shared/data/hapt --configs LM,RB-KD,LM-Att,RB-KD-Att,RAB-KD \
        --teachers runs/hapt-v1-teachers --seeds 1 --epochs 30 --out runs/hapt-main-job-v1
    python bench/matrix_time.py runs/hapt-main-job-v1 --out bench/main-job-hapt
"""
import json
from datetime import datetime
from pathlib import Path
import pandas as pd
from fastcore.script import call_parse
from hark_nbdev.results import read_runs, ResultsStore
from hark_nbdev.report import md_table

TARGETS = {'matrix': (30., 'full hapt matrix, 3 seeds, shared teachers'), 'main job': (10., "README's main job (5 students, 1 seed, shipped teachers)")}

def matrix_time(run_dir) -> dict:
    "The invocations of `run_dir` that trained rows: wall minutes each, and what they ran with; the rows' training seconds per configuration."
    runs = [r for r in read_runs(run_dir)['runs'] if r.get('finished') and r.get('rows_trained')]
    if not runs: raise ValueError(f"{run_dir}: no finished invocation that trained rows in its run.json")
    wall = lambda r: (datetime.fromisoformat(r['finished']) - datetime.fromisoformat(r['started'])).total_seconds() / 60
    # precision None: the recipe's, float32 (runs made before the option have none)
    inv = [dict(started=r['started'], minutes=wall(r), rows=r['rows_trained'], workers=r['settings'].get('workers', 1),
                precision=r['settings'].get('precision') or 'fp32',
                threads=r.get('worker_threads', r.get('torch_threads')), cpu=r.get('cpu'), cores=r.get('cpu_count'),
                commit=r.get('git_commit'), dirty=r.get('git_dirty'), argv=' '.join(['hark-run'] + r['argv'][1:])) for r in runs]
    rows = ResultsStore(run_dir).df
    per = rows.groupby('config', sort=False)['train_seconds'].agg(['count', 'sum', 'mean']).rename(
        columns={'count': 'rows', 'sum': 'train s (sum)', 'mean': 'train s (mean)'})
    st = runs[-1]['settings']
    full = len(st['configs']) == 8 and len(st['seeds']) == 3 and st.get('teacher_seeds') == 1 and not st.get('teachers')
    main = st['configs'] == ['LM', 'RB-KD', 'LM-Att', 'RB-KD-Att', 'RAB-KD'] and len(st['seeds']) == 1 and bool(st.get('teachers'))
    kind = 'matrix' if full else 'main job' if main else None
    return dict(run=str(run_dir), invocations=inv, per_config=per.round(1).reset_index().to_dict('records'),
                train_seconds=float(rows['train_seconds'].sum()), n_rows=len(rows), kind=kind)

def report(b) -> str:
    inv = pd.DataFrame(b['invocations'])
    total = inv['minutes'].sum()
    one = len(inv) == 1
    L = [f"# Wall time of {'the full matrix' if b['kind'] == 'matrix' else 'the main job' if b['kind'] == 'main job' else 'a run'} (issue 16)", '', f"Run folder: `{b['run']}`  ", 'Command(s):', '']
    L += [f"    {a}" for a in inv['argv']]
    L += ['', md_table(inv.drop(columns=['argv']).round(2), index=False), '',
          f"Rows: {b['n_rows']}; their training seconds add up to {b['train_seconds'] / 60:.1f} min (per process: with several "
          "workers they overlap, so the sum exceeds the wall time).", '', md_table(pd.DataFrame(b['per_config']), index=False), '',
          '## Target', '', '| target | value | met |', '|---|---|---|']
    if b['kind'] is None: L += ['| (none: neither the full matrix nor the main job) | | |', '']
    else:
        lim, what = TARGETS[b['kind']]
        L += [f"| {what} <= {lim:.0f} min | {total:.1f} min ({'one invocation' if one else f'{len(inv)} invocations added'}) | {'yes' if total <= lim else 'no'} |", '']
    return '\n'.join(L)

@call_parse
def main(run_dir: str,                 # the matrix's run folder
         out: str = 'bench/matrix-hapt'):  # output folder
    "Write OUT/matrix.json and OUT/REPORT.md from the run folder."
    b = matrix_time(run_dir)
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    (out/'matrix.json').write_text(json.dumps(b, indent=1, default=str))
    (out/'REPORT.md').write_text(report(b))
    print(report(b))
