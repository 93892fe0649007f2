"""Wall time of a whole `hark-run` matrix (issue 16's target: the full `hapt` matrix, 3 seeds, shared teachers, in at
most 30 minutes on 2 cores), read from the run folder that the run wrote: `run.json` (start, finish, workers, threads,
machine) and `results.csv` (each row's training seconds). It measures nothing itself; the run is the measurement.
Writes OUT/matrix.json and OUT/REPORT.md.

    hark-run --dataset hapt --path ../shared/data/hapt --configs all --seeds 3 --teacher-seeds 1 --epochs 30 \
        --teacher-epochs 15 --workers 2 --out runs/hapt-standard-oc30-t15-s3-w2
    python bench/matrix_time.py runs/hapt-standard-oc30-t15-s3-w2 --out bench/matrix-hapt
"""
import json
from datetime import datetime
from pathlib import Path
import pandas as pd
from fastcore.script import call_parse
from hark_nbdev.results import read_runs, ResultsStore
from hark_nbdev.report import md_table

TARGET_MIN = 30.

def matrix_time(run_dir) -> dict:
    "The invocations of `run_dir` that trained rows: wall minutes each, and what they ran with; the rows' training seconds per configuration."
    runs = [r for r in read_runs(run_dir)['runs'] if r.get('finished') and r.get('rows_trained')]
    if not runs: raise ValueError(f"{run_dir}: no finished invocation that trained rows in its run.json")
    wall = lambda r: (datetime.fromisoformat(r['finished']) - datetime.fromisoformat(r['started'])).total_seconds() / 60
    inv = [dict(started=r['started'], minutes=wall(r), rows=r['rows_trained'], workers=r['settings'].get('workers', 1),
                threads=r.get('worker_threads', r.get('torch_threads')), cpu=r.get('cpu'), cores=r.get('cpu_count'),
                commit=r.get('git_commit'), dirty=r.get('git_dirty'), argv=' '.join(['hark-run'] + r['argv'][1:])) for r in runs]
    rows = ResultsStore(run_dir).df
    per = rows.groupby('config', sort=False)['train_seconds'].agg(['count', 'sum', 'mean']).rename(
        columns={'count': 'rows', 'sum': 'train s (sum)', 'mean': 'train s (mean)'})
    st = runs[-1]['settings']
    full = len(st['configs']) == 8 and len(st['seeds']) == 3 and st.get('teacher_seeds') == 1 and not st.get('teachers')
    return dict(run=str(run_dir), invocations=inv, per_config=per.round(1).reset_index().to_dict('records'),
                train_seconds=float(rows['train_seconds'].sum()), n_rows=len(rows), full_matrix=full)

def report(b) -> str:
    inv = pd.DataFrame(b['invocations'])
    total = inv['minutes'].sum()
    one = len(inv) == 1
    L = ['# Wall time of the full matrix (issue 16)', '', f"Run folder: `{b['run']}`  ", 'Command(s):', '']
    L += [f"    {a}" for a in inv['argv']]
    L += ['', md_table(inv.drop(columns=['argv']).round(2), index=False), '',
          f"Rows: {b['n_rows']}; their training seconds add up to {b['train_seconds'] / 60:.1f} min (per process: with several "
          "workers they overlap, so the sum exceeds the wall time).", '', md_table(pd.DataFrame(b['per_config']), index=False), '',
          '## Target', '', '| target | value | met |', '|---|---|---|',
          f"| full hapt matrix, 3 seeds, shared teachers <= {TARGET_MIN:.0f} min | {total:.1f} min "
          f"({'one invocation' if one else f'{len(inv)} invocations added'}) | "
          f"{('yes' if total <= TARGET_MIN else 'no') if b['full_matrix'] else 'not this run: it is not the 8 configurations x 3 seeds with one shared teacher pair, all trained here'} |", '']
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
