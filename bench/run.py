"""Speed and cost benchmark of hark_nbdev on this machine (not a timed test).

Measures (1) the wall time of a whole experiment matrix, (2) the per-epoch time of every configuration and the
cost of distillation relative to training the student plus one teacher pass, (3) where a training step of LM, LM-Att,
MM and OM spends its time (conv stack, LSTM), (4) CPU latency (batch 1), throughput (batch 64) and peak memory of the
same four models; writes `OUT/bench.json` and `OUT/REPORT.md`.

    python bench/run.py --dataset hapt --path ../shared/data/hapt --seeds 3 --epochs 30 --teacher-epochs 15 \
        --teacher-seeds 1 --out runs/hapt-standard
"""
import json, statistics, subprocess, sys, time, warnings
from pathlib import Path
import torch
import torch.nn.functional as F
from fastcore.script import call_parse
from hark_nbdev.datasets import get_data
from hark_nbdev.configs import CONFIGS, TEACHER_OF, TEACHERS, build_learner, train_config
from hark_nbdev.results import versions, machine
from hark_nbdev.experiment import run_experiment
from hark_nbdev.models import get_model
from hark_nbdev.profile import profile_model, median_time
from hark_nbdev.plots import plot_all

warnings.filterwarnings('ignore', category=FutureWarning)
MODELS = ('LM', 'LM-Att', 'MM', 'OM')   # the models whose steps and inference are measured

def epoch_seconds(data, epochs=3) -> dict:
    "Mean seconds per training epoch of every configuration (teachers untrained: their cost does not depend on weights)."
    teachers = {t: build_learner(t, data, seed=0).model for t in TEACHERS}
    res = {}
    for c in CONFIGS:
        t = teachers.get(TEACHER_OF[c])
        learn, info = train_config(c, data, teacher=t, epochs=epochs, seed=0, quiet=True)
        res[c] = info['train_seconds'] / info['epochs']
    return res

@torch.no_grad()
def inference_seconds(model, dl) -> float:
    "Seconds for one eval-mode pass of `model` over `dl`."
    model.eval(); t0 = time.perf_counter()
    for xb, _ in dl: model(xb)
    return time.perf_counter() - t0

def median_ms(f, repeats=10, warmup=2) -> float:
    "Median wall time (ms) of `f()` after `warmup` untimed calls (`profile.median_time`)."
    return 1e3 * median_time(f, repeats, warmup)

def step_breakdown(name, data, batch=64) -> dict:
    "Milliseconds of one bare training step of `name` (forward, backward, Adam), and of its conv stack and LSTM alone (forward + backward)."
    m = get_model(name, data.n_channels, data.n_classes, data.window).train()
    x, y = torch.randn(batch, 1, data.window, data.n_channels), torch.randint(0, data.n_classes, (batch,))
    seq = torch.randn(batch, data.window - 16, m.filters * data.n_channels, requires_grad=True)   # the conv features over time, as in the model
    opt = torch.optim.Adam(m.parameters())
    def step(): opt.zero_grad(); F.cross_entropy(m(x), y).backward(); opt.step()
    return dict(step_ms=median_ms(step), conv_ms=median_ms(lambda: m.features(x).sum().backward()),
                lstm_ms=median_ms(lambda: m.lstm(seq)[0].sum().backward()))

_PEAK = """
import torch
from hark_nbdev.models import get_model
def rss(key): return int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1])
torch.set_num_threads({threads})
m, x = get_model('{name}', {c}, {k}, {w}).eval(), torch.randn(64, 1, {w}, {c})
before = rss('VmRSS:')
open('/proc/self/clear_refs', 'w').write('5')   # reset the peak (VmHWM) so that imports do not count
with torch.no_grad():
    for _ in range(5): m(x)
print(before, rss('VmHWM:'))
"""

def peak_rss_mib(name, data, threads) -> tuple:
    "RSS before, and peak RSS during, batch-64 inference of `name` in a fresh process (MiB)."
    code = _PEAK.format(name=name, c=data.n_channels, k=data.n_classes, w=data.window, threads=threads)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    before, peak = map(int, out.split()[-2:])
    return before / 1024, peak / 1024

def report(b: dict) -> str:
    "The benchmark as a markdown report."
    L = [f"# Benchmark: {b['dataset']} ({b['protocol']})", '',
         f"Command: `{b['command']}`  ", f"Machine: {b['machine']}; torch threads: {b['threads']}  ",
         f"Data: {b['data']}", '']
    if 'matrix_seconds' in b:
        L += ['## Whole matrix', '', f"{b['matrix']}: **{b['matrix_seconds']/60:.1f} min** wall time "
              f"(target <= 30 min)." + (" Training time inside it (the rows' `train_seconds`): teachers "
              f"{b['train_minutes']['teachers']:.1f} min, students {b['train_minutes']['students']:.1f} min; the rest is "
              "reading the data, evaluation and profiling (latency included) of every row." if 'train_minutes' in b else ''), '']
    L += ['## Seconds per training epoch', '', '| configuration | s / epoch |', '|---|---|']
    L += [f'| {c} | {s:.2f} |' for c, s in b['epoch_seconds'].items()]
    r = b['kd_ratio']
    L += ['', f"Teacher (OM-Att) inference over the training windows: {b['teacher_pass_seconds']:.2f} s. "
          f"RAB-KD epoch / (LM epoch + teacher pass) = {r:.2f} (target <= 1.2).", '',
          '## Inference cost', '', f"Measured by `{b.get('inference_command', b['command'])}`.", '', '| model | params | MACs | latency batch 1 (ms) | throughput batch 64 (windows/s) | peak RSS during inference (MiB) |',
          '|---|---|---|---|---|---|']
    L += [f"| {m} | {p['params']:,} | {p['macs']:,} | {p['latency_ms']:.2f} | {p['throughput']:,.0f} | "
          f"{p['peak_rss_mib']:.0f} (+{p['peak_rss_mib'] - p['rss_before_mib']:.1f}) |" for m, p in b['inference'].items()]
    L += ['', 'Peak RSS: peak resident memory of a fresh process during batch-64 inference (the peak is reset after the '
          'imports and the model are loaded); in brackets, the growth over the RSS just before inference. Latency and '
          'throughput: `profile.profile_model` (single thread, median of repeated runs after warm-up).']
    if 'steps' in b:
        L += ['', '## Where a training step goes', '', f"Measured by the same command. Bare PyTorch on {b['threads']} thread(s), batch 64, median of 10 after warm-up: one "
              "training step (forward, backward, Adam), then the conv stack (with its CBAM where the model has one) and the two "
              "LSTM layers alone, forward and backward. The parts are timed on their own, so they need not add up to the step: a "
              "negative rest means they took longer alone than inside it. The last column is a fastai epoch above divided by its "
              f"{b['train_batches']} training batches, so it also holds the validation pass and fastai's own per-batch work.", '',
              '| model | step (ms) | conv stack (ms) | LSTM (ms) | rest of the step (ms) | fastai epoch / training batches (ms) |',
              '|---|---|---|---|---|---|']
        L += [f"| {m} | {t['step_ms']:.1f} | {t['conv_ms']:.1f} | {t['lstm_ms']:.1f} | {t['step_ms'] - t['conv_ms'] - t['lstm_ms']:.1f} | "
              f"{1e3 * b['epoch_seconds'][m] / b['train_batches']:.1f} |" for m, t in b['steps'].items()]
    return '\n'.join(L) + '\n'

@call_parse
def main(dataset: str = 'hapt',      # dataset name
         path: str = None,           # dataset folder
         protocol: str = 'standard', # protocol
         seeds: int = 3,             # seeds of the matrix
         epochs: int = 30,           # epochs per training in the matrix
         teacher_epochs: int = None, # epochs of the teachers (default: epochs)
         schedule: str = 'one_cycle',# 'one_cycle' or 'constant' (the study's early stopping)
         patience: int = 10,         # early-stopping patience (constant schedule)
         teacher_seeds: int = None,  # share teachers across seeds (see hark-run --teacher-seeds)
         threads: int = 2,           # torch threads
         out: str = 'runs/bench',    # output folder (the matrix's run folder too)
         matrix: bool = True,        # also run (or resume) and time the whole matrix
         timing: bool = True):       # measure seconds per epoch (else keep those of an earlier OUT/bench.json)
    "Measure speed and cost; write OUT/bench.json and OUT/REPORT.md."
    torch.set_num_threads(threads)
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    data = get_data(dataset, path=path, protocol=protocol)
    old = json.loads((out/'bench.json').read_text()) if (out/'bench.json').exists() else {}
    cmd = ' '.join(['python bench/run.py'] + sys.argv[1:])
    m = machine()
    b = dict(dataset=dataset, protocol=protocol, threads=threads, command=cmd, inference_command=cmd,
             machine=f"{m['cpu']} ({m['processor']}, torch's {m['cpu_capability']} kernels), {m['cpu_count']} cores, training on {m['device']}", versions=versions(),
             data=f"{len(data.train)} train / {len(data.valid)} valid / {len(data.test)} test windows of "
                  f"{data.window} x {data.n_channels}, {data.n_classes} classes")
    if not matrix: b.update({k: old[k] for k in ('matrix', 'matrix_seconds', 'train_minutes', 'command') if k in old})
    if matrix:
        t0 = time.perf_counter()
        rows = run_experiment(dataset, path=path, protocol=protocol, configs='all', seeds=seeds, epochs=epochs, out=out, patience=patience,
                              teacher_seeds=teacher_seeds, schedule=schedule, teacher_epochs=teacher_epochs)
        b['matrix_seconds'] = time.perf_counter() - t0
        b['matrix'] = (f"{len(rows)} rows (8 configurations x {seeds} seeds" +
                       (f", teachers trained for {teacher_seeds} seed(s) and shared" if teacher_seeds else '') +
                       f"), schedule {schedule}, " + (f"{epochs} epochs (teachers {teacher_epochs or epochs})" if schedule == 'one_cycle'
                       else f"at most {epochs} epochs, patience {patience}"))
        if b['matrix_seconds'] < 60: b['matrix'] += ' (resumed: rows were already there, so this is not the training time)'
        teach = rows['config'].isin(TEACHERS)
        b['train_minutes'] = dict(teachers=rows.loc[teach, 'train_seconds'].sum() / 60, students=rows.loc[~teach, 'train_seconds'].sum() / 60)
        plot_all(out/'results.csv', out)
    if timing:
        b['epoch_seconds'] = epoch_seconds(data)
        teacher = get_model('OM-Att', data.n_channels, data.n_classes, data.window)
        b['teacher_pass_seconds'] = inference_seconds(teacher, data.dls.train.new(shuffle=False, drop_last=False))
    else: b.update({k: old[k] for k in ('epoch_seconds', 'teacher_pass_seconds')})
    e = b['epoch_seconds']
    b['kd_ratio'] = e['RAB-KD'] / (e['LM'] + b['teacher_pass_seconds'])
    b['train_batches'] = len(data.dls.train)
    b['steps'] = {m: step_breakdown(m, data) for m in MODELS}
    b['inference'] = {}
    for m in MODELS:
        p = profile_model(get_model(m, data.n_channels, data.n_classes, data.window), data.window, data.n_channels)
        p['rss_before_mib'], p['peak_rss_mib'] = peak_rss_mib(m, data, threads)
        b['inference'][m] = {k: (v.item() if hasattr(v, 'item') else v) for k, v in p.items()}
    (out/'bench.json').write_text(json.dumps(b, indent=1, default=str))
    (out/'REPORT.md').write_text(report(b))
    print(report(b))
