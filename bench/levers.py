"""The speed levers of issue 16, each measured on the students' training step: `torch.compile`, other formulations
of the (5 x 1) convolutions, channels-last, batch size, thread count, and several seeds trained as one wider model.
Each is timed against the package's own eager step in the same run, on real `hapt` training windows, and its
throughput gain is set beside the 3x the issue asks for. Writes OUT/levers.json and OUT/REPORT.md. Not a test.

    python bench/levers.py --path ../shared/data/hapt --out bench/levers-hapt

Run it alone on an idle machine: two PyTorch processes on 2 cores make every number here worthless.
"""
import json, sys, time, warnings
from pathlib import Path
import torch
import torch.nn.functional as F
from torch import nn
from fastcore.script import call_parse
from hark_nbdev.datasets import get_data
from hark_nbdev.models import get_model, DeepConvLSTM
from hark_nbdev.profile import median_time
from hark_nbdev.results import machine, versions, git_commit

warnings.filterwarnings('ignore')
TARGET = 3.0   # issue 16: student training throughput >= 3x

def train_step(model, x, y, opt=None):
    "A bare training step (forward, CE, backward, Adam) of `model` on one batch, as a callable."
    opt = opt or torch.optim.Adam(model.parameters(), lr=1e-3)
    def step():
        opt.zero_grad(); F.cross_entropy(model(x), y).backward(); opt.step()
    return step

def step_ms(model, x, y, repeats=30) -> float:
    "Median milliseconds of one training step of `model` at the batch `x`."
    return 1e3 * median_time(train_step(model, x, y), repeats, 5)

def compiled_ms(name, x, y, part) -> dict:
    "`torch.compile` (inductor) of the whole model or of its conv stack only: the first step's seconds (compilation) and the step's ms."
    torch._dynamo.reset(); torch.manual_seed(0)
    m = get_model(name, x.shape[-1], int(y.max()) + 1, x.shape[2])
    if part == 'model': m = torch.compile(m)
    else: m.features = torch.compile(m.features)
    step = train_step(m, x, y)
    t0 = time.perf_counter(); step(); first = time.perf_counter() - t0
    return dict(compile_s=first, ms=1e3 * median_time(step, 30, 5))

# The conv stack of LM (1 -> 4 -> 4 -> 4 -> 4 filters, (5 x 1) kernels, ReLU), forward + backward, written five ways.
def _stack_params(seed=0):
    torch.manual_seed(seed)
    ws = [nn.Parameter(torch.randn(4, 1 if i == 0 else 4, 5, 1) * .3) for i in range(4)]
    return ws, [nn.Parameter(torch.zeros(4)) for _ in range(4)]

def stack_conv2d(x, ws, bs, channels_last=False):
    h = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    for w, b in zip(ws, bs): h = F.relu(F.conv2d(h, w, b))
    return h

def stack_package(x, ws, bs):
    from hark_nbdev.conv import _FlippedInputGrad
    h = x
    for w, b in zip(ws, bs): h = F.relu(_FlippedInputGrad.apply(h, w, b, (0, 0)))
    return h

def stack_conv1d(x, ws, bs):   # every sensor channel a sequence of its own: (B*C, filters, T)
    B, _, T, C = x.shape
    h = x.permute(0, 3, 1, 2).reshape(B * C, 1, T)
    for w, b in zip(ws, bs): h = F.relu(F.conv1d(h, w[..., 0], b))
    return h.reshape(B, C, 4, -1).permute(0, 2, 3, 1)

def stack_shifted(x, ws, bs):  # channels last (B, T, C, filters): a sum of five shifted matrix products
    h = x.permute(0, 2, 3, 1)
    for w, b in zip(ws, bs):
        t, wk = h.shape[1] - 4, w[..., 0].permute(2, 1, 0)
        h = F.relu(b + sum(h[:, k:k + t] @ wk[k] for k in range(5)))
    return h

def stack_unfold(x, ws, bs):   # channels last, im2col by `unfold`, one matrix product per layer
    h = x.permute(0, 2, 3, 1)
    for w, b in zip(ws, bs):
        u = h.unfold(1, 5, 1)
        h = F.relu(u.reshape(*u.shape[:3], -1) @ w[..., 0].reshape(4, -1).t() + b)
    return h

FORMS = {'package (FastConv2d)': stack_package, 'nn.Conv2d': stack_conv2d,
         'nn.Conv2d, channels-last': lambda x, w, b: stack_conv2d(x, w, b, True),
         'conv1d per sensor channel': stack_conv1d, 'shifted matmuls': stack_shifted, 'unfold + matmul': stack_unfold}

def conv_forms(x) -> dict:
    "Forward + backward ms of LM's conv stack in each formulation (same weights; outputs checked equal)."
    ws, bs = _stack_params()
    ref = stack_conv2d(x, ws, bs)
    res = {}
    for k, f in FORMS.items():
        out = f(x, ws, bs)
        out = out if out.shape == ref.shape else out.permute(0, 3, 1, 2)
        assert torch.allclose(out, ref, atol=1e-4), k
        res[k] = 1e3 * median_time(lambda: f(x, ws, bs).sum().backward(), 30, 5)
    return res

def grouped_stack_ms(x, k) -> float:
    "Forward + backward ms of k LM conv stacks as one grouped stack (groups=k): k seeds' convolutions in one call."
    torch.manual_seed(0)
    convs = [nn.Conv2d(1, 4 * k, (5, 1))] + [nn.Conv2d(4 * k, 4 * k, (5, 1), groups=k) for _ in range(3)]
    def f():
        h = x
        for c in convs: h = F.relu(c(h))
        h.sum().backward()
    return 1e3 * median_time(f, 30, 5)

def _worker_ms(name, xb, yb, barrier, results):
    "One of the concurrent processes: one thread, the step of `name` timed after all processes are ready."
    torch.set_num_threads(1); torch.manual_seed(0)
    m = get_model(name, xb.shape[-1], int(yb.max()) + 1, xb.shape[2])
    step = train_step(m, xb, yb)
    for _ in range(5): step()
    barrier.wait()
    results.put(1e3 * median_time(step, 60, 0))

def concurrent_ms(name, xb, yb, n=2) -> list:
    "Step ms of `name` in each of `n` single-thread processes training at the same time (spawned, so no OpenMP state is forked)."
    import multiprocessing as mp
    ctx = mp.get_context('spawn')
    barrier, results = ctx.Barrier(n), ctx.Queue()
    ps = [ctx.Process(target=_worker_ms, args=(name, xb, yb, barrier, results)) for _ in range(n)]
    for p in ps: p.start()
    res = [results.get(timeout=600) for _ in ps]
    for p in ps: p.join()
    return res

def measure(data, threads) -> dict:
    torch.set_num_threads(threads)
    X, y = data.dls.train.dataset.tensors
    xb, yb = X[:64], y[:64]
    b = {}
    for name in ('LM', 'LM-Att'):
        torch.manual_seed(0); m = get_model(name, data.n_channels, data.n_classes, data.window)
        b[name] = dict(eager_ms=step_ms(m, xb, yb))
        b[name]['batch'] = {bs: step_ms(m, X[:bs], y[:bs]) for bs in (64, 128, 256, 512)}
        torch.set_num_threads(1); b[name]['one_thread_ms'] = step_ms(m, xb, yb); torch.set_num_threads(threads)
        b[name]['two_processes_ms'] = concurrent_ms(name, xb, yb, 2)
        b[name]['compile'] = {part: compiled_ms(name, xb, yb, part) for part in ('model', 'conv stack')}
        print(name, b[name], flush=True)
    b['conv_forms'] = conv_forms(xb)
    f, h = 4, 8   # LM's widths; k seeds stacked need k x the filters and units (dense: an upper bound of the block-diagonal work)
    b['stacked'] = {}
    for k in (1, 2, 3, 5):
        torch.manual_seed(0)
        wide = DeepConvLSTM(data.n_channels, data.n_classes, data.window, f * k, h * k)
        b['stacked'][k] = dict(dense_ms=step_ms(wide, xb, yb), grouped_convs_ms=grouped_stack_ms(xb, k))
    print(b['conv_forms'], b['stacked'], flush=True)
    return b

def gains(b) -> list:
    "(lever, LM throughput gain, LM-Att gain or None, note): windows/s of each lever over the eager batch-64 step."
    L = []
    for part in ('model', 'conv stack'):
        L.append((f'torch.compile ({part})', b['LM']['eager_ms'] / b['LM']['compile'][part]['ms'],
                  b['LM-Att']['eager_ms'] / b['LM-Att']['compile'][part]['ms'],
                  f"compilation {b['LM']['compile'][part]['compile_s']:.1f} / {b['LM-Att']['compile'][part]['compile_s']:.1f} s per fit"))
    for bs in (128, 256, 512):
        L.append((f'batch {bs}', bs / 64 * b['LM']['eager_ms'] / b['LM']['batch'][str(bs)], bs / 64 * b['LM-Att']['eager_ms'] / b['LM-Att']['batch'][str(bs)],
                  'fewer steps per epoch: needs its own learning rate and a validation check'))
    L.append(('1 thread instead of 2 (one process)', b['LM']['eager_ms'] / b['LM']['one_thread_ms'], b['LM-Att']['eager_ms'] / b['LM-Att']['one_thread_ms'],
              'the step barely uses the second core'))
    two = lambda n: sum(b[n]['eager_ms'] / t for t in b[n]['two_processes_ms'])
    L.append(('2 single-thread processes at once (2 trainings)', two('LM'), two('LM-Att'),
              "both processes' windows/s together, timed while both train"))
    cf = b['conv_forms']; base = cf['package (FastConv2d)']
    best = min((v, k) for k, v in cf.items() if not k.startswith('package'))
    conv_share = base / b['LM']['eager_ms']
    L.append((f'best other conv formulation ({best[1]})', 1 / (1 - conv_share + conv_share * best[0] / base), None,
              f'conv stack {base:.2f} -> {best[0]:.2f} ms, applied to its share of the LM step'))
    st = b['stacked']
    for k in (2, 3, 5):
        s1, sk = st['1'], st[str(k)]
        L.append((f'{k} seeds as one model (dense kernels)', k * s1['dense_ms'] / sk['dense_ms'], None,
                  f"grouped conv stack: {sk['grouped_convs_ms']:.2f} ms for {k} against {s1['grouped_convs_ms']:.2f} ms for 1"))
    return L

def report(b) -> str:
    f2 = lambda v: '' if v is None else f'{v:.2f}'
    L = ['# Speed levers for the students (issue 16)', '', f"Command: `{b['command']}`  ", f"Commit: {b['git_commit']}  ",
         f"Machine: {b['machine']}; torch threads {b['threads']}  ", f"Data: {b['data']}", '',
         'Every time is the median of 30 calls after 5 warm-up calls, in this one run: a bare training step (forward, '
         'cross-entropy, backward, Adam) on real training windows, batch 64 unless said.', '',
         '## Eager steps (the package today)', '', '| model | step (ms), batch 64 | 128 | 256 | 512 | 1 thread, batch 64 | 2 processes of 1 thread, batch 64 (each) |', '|---|---|---|---|---|---|---|']
    for n in ('LM', 'LM-Att'):
        s = b[n]; L.append(f"| {n} | {s['eager_ms']:.2f} | " + ' | '.join(f"{s['batch'][k]:.2f}" for k in ('128', '256', '512')) + f" | {s['one_thread_ms']:.2f} | "
                 + ' / '.join(f'{t:.2f}' for t in s['two_processes_ms']) + ' |')
    L += ['', '## torch.compile (inductor, CPU)', '', '| model | compiled part | first step (s) | step (ms) | eager (ms) |', '|---|---|---|---|---|']
    for n in ('LM', 'LM-Att'):
        for part, c in b[n]['compile'].items(): L.append(f"| {n} | {part} | {c['compile_s']:.1f} | {c['ms']:.2f} | {b[n]['eager_ms']:.2f} |")
    L += ['', "## LM's conv stack (four (5 x 1) convolutions with ReLU), forward + backward", '', '| formulation | ms |', '|---|---|']
    L += [f'| {k} | {v:.2f} |' for k, v in b['conv_forms'].items()]
    L += ['', '## Several seeds as one model', '', 'k seeds of LM stacked need k times its filters and LSTM units; computed with dense kernels (the '
          'off-diagonal blocks held at zero) the stack costs what a dense model of that width costs. The grouped column times only the conv stack with '
          '`groups=k`.', '', '| seeds k | dense step (ms) | windows/s per seed over LM | grouped conv stack (ms) |', '|---|---|---|---|']
    st = b['stacked']
    L += [f"| {k} | {v['dense_ms']:.2f} | {int(k) * st['1']['dense_ms'] / v['dense_ms']:.2f}x | {v['grouped_convs_ms']:.2f} |" for k, v in st.items()]
    L += ['', '## Throughput gain of each lever over the eager batch-64 step', '', f'The target is {TARGET:.0f}x for LM and LM-Att.', '',
          '| lever | LM | LM-Att | note |', '|---|---|---|---|']
    g = gains(b)
    L += [f'| {k} | {f2(a)}x | {f2(c) + "x" if c else ""} | {n} |' for k, a, c, n in g]
    best = max(g, key=lambda r: r[1])
    L += ['', f"Largest gain for LM: **{best[1]:.2f}x** ({best[0]}); target {TARGET:.0f}x "
          f"{'met' if best[1] >= TARGET else 'not met by any single lever measured here'}.", '']
    return '\n'.join(L) + '\n'

@call_parse
def main(path: str = None,   # the hapt folder (default: HARK_DATA, the cache or a download)
         threads: int = 2,   # torch threads
         report_only: bool = False,  # rewrite REPORT.md from OUT/levers.json, measuring nothing
         out: str = 'bench/levers-hapt'):  # output folder
    "Measure the speed levers; write OUT/levers.json and OUT/REPORT.md."
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    if not report_only:
        data = get_data('hapt', path=path)
        m = machine()
        b = dict(command=' '.join(['python bench/levers.py'] + sys.argv[1:]), threads=threads, versions=versions(),
                 git_commit='%s%s' % (lambda c: (c[0], ' (dirty)' if c[1] else ''))(git_commit()),
                 machine=f"{m['cpu']} ({m['cpu_capability']} kernels), {m['cpu_count']} cores",
                 data=f"hapt standard: {len(data.train)} train windows of {data.window} x {data.n_channels}")
        b.update(measure(data, threads))
        (out/'levers.json').write_text(json.dumps(b, indent=1))
    b = json.loads((out/'levers.json').read_text())   # json keys are strings, measured or read back
    (out/'REPORT.md').write_text(report(b))
    print((out/'REPORT.md').read_text())
