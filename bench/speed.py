"""Training speed of hark_nbdev on this machine (issue 16): seconds per epoch of every configuration through the
package against a bare PyTorch loop, throughput beside the machine's measured matrix-multiply rate, the same fits
with the old convolution gradients (`nn.Conv2d`) for the before/after ratio, the teacher's outputs computed once and
read back, a projection of the whole matrix, validation F1 of the old and new gradients over seeds, and (optionally)
the README's main job timed end to end. Writes OUT/speed.json and OUT/REPORT.md. Not a test: it measures.

    python bench/speed.py --path ../shared/data/hapt --out bench/speed-hapt --main-job

Run it alone on an idle machine: two PyTorch processes on 2 cores make every number here worthless.
"""
import contextlib, json, math, sys, tempfile, time, warnings
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from fastcore.script import call_parse
from hark_nbdev.datasets import get_data
from hark_nbdev.configs import CONFIGS, TEACHERS, kd_weights, train_config
from hark_nbdev.conv import FastConv2d
from hark_nbdev.models import get_model, attention_modules
from hark_nbdev.attention import MapHooks
from hark_nbdev.losses import loss_terms, combine_terms
from hark_nbdev.distill import stored_teacher_outputs
from hark_nbdev.profile import count_macs, median_time
from hark_nbdev.results import machine, versions, git_commit
from hark_nbdev.experiment import run_experiment

warnings.filterwarnings('ignore', category=FutureWarning)
STUDENTS = ('LM', 'RB-KD', 'LM-Att', 'RB-KD-Att', 'RAB-KD', 'MM')
KD_PAIRS = {'RB-KD': 'LM', 'RAB-KD': 'LM-Att', 'RB-KD-Att': 'LM-Att'}   # a KD configuration and its plain student

def mm_gmacs(n=2048, repeats=5, dtype=torch.float32) -> float:
    "The machine's dense matrix-multiply rate (GMAC/s) at the current thread count: an n x n `torch.mm` in `dtype`."
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return n ** 3 / median_time(lambda: torch.mm(a, b), repeats, 1) / 1e9

@contextlib.contextmanager
def plain_conv_grads():
    "Inside: every `FastConv2d` runs as a plain `nn.Conv2d` (PyTorch's own backward), the package before this change."
    fast = FastConv2d.forward
    FastConv2d.forward = nn.Conv2d.forward
    try: yield
    finally: FastConv2d.forward = fast

def package_fit(config, data, teachers, epochs, cache_dir=None, seed=0) -> dict:
    "One fit through `train_config`: its seconds, the teacher-output seconds inside it, per-epoch seconds without them, valid F1."
    t = CONFIGS[config].teacher
    cache = None if t is None or cache_dir is None else str(Path(cache_dir)/f'{t}.outputs.pt')
    _, info = train_config(config, data, teacher=teachers.get(t), epochs=epochs, seed=seed, quiet=True, teacher_cache=cache)
    ts = 0. if math.isnan(info['teacher_seconds']) else info['teacher_seconds']
    return dict(fit_seconds=info['train_seconds'], teacher_seconds=ts, epoch_seconds=(info['train_seconds'] - ts) / info['epochs'],
                valid_f1=info['valid_f1'])

def bare_epoch_seconds(config, data, teachers, outputs, epochs=2, bs=64, seed=0) -> float:
    "Seconds per epoch of a bare PyTorch loop: index tensors, forward, loss (KD/attention terms by the package's loss functions), Adam; plus a validation pass."
    r = CONFIGS[config]
    torch.manual_seed(seed)
    model = get_model(r.model, data.n_channels, data.n_classes, data.window)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    X, y = data.dls.train.dataset.tensors
    Xv = data.dls.valid.dataset.tensors[0]
    logits, tmaps = outputs.get(r.teacher, (None, None))
    hk = MapHooks(model, attention_modules(model)) if r.attention else None
    kd = kd_weights(config) if r.teacher else None   # the weights the package trains this configuration with
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(X)).split(bs):
            if len(idx) < bs: continue   # drop_last, as the package's training loader
            out = model(X[idx])
            if r.teacher is None: loss = F.cross_entropy(out, y[idx])
            else:
                smaps = hk.maps() if hk else None
                tm = {s: tuple(m[idx] for m in p) for s, p in tmaps.items()} if hk else None
                loss = combine_terms(loss_terms(out, y[idx], logits[idx], kd['alpha'], kd['T'], kd['beta'], smaps, tm), kd['alpha'], kd['beta'])
            opt.zero_grad(); loss.backward(); opt.step()
        model.eval()
        with torch.no_grad():
            for xb in Xv.split(bs): model(xb)
    if hk: hk.remove()
    return (time.perf_counter() - t0) / epochs

def fit_throughput(epoch_s, fixed_s, n_windows, macs, epochs=30) -> dict:
    "Windows/s and GMAC/s over a whole fit of `epochs` epochs whose fixed cost (teacher outputs) is `fixed_s` (training ~ 3 x forward MACs)."
    fit = fixed_s + epochs * epoch_s
    w = epochs * n_windows / fit
    return dict(fit_seconds=fit, windows_per_s=w, gmacs=3 * macs * w / 1e9)

def trained_teachers(data, teacher_dir):
    "OM and OM-Att: trained weights from `teacher_dir` (a run folder) if it has them, else untrained (speed does not depend on weights)."
    from hark_nbdev.checkpoint import model_path, load_weights
    res, source = {}, {}
    for t in TEACHERS:
        m = get_model(t, data.n_channels, data.n_classes, data.window)
        p = model_path(teacher_dir, 'hapt', 'standard', t, 0) if teacher_dir else None
        if p is not None and p.exists(): load_weights(m, p, legacy=True); source[t] = str(p)
        else: source[t] = 'untrained'
        res[t] = m.eval()
    return res, source

def f1_check(data, configs, seeds, epochs) -> dict:
    "Validation macro F1 of `configs` over `seeds` with the new gradients and with the old (`plain_conv_grads`)."
    res = {}
    for c in configs:
        new = [package_fit(c, data, {}, epochs, seed=s)['valid_f1'] for s in range(seeds)]
        with plain_conv_grads(): old = [package_fit(c, data, {}, epochs, seed=s)['valid_f1'] for s in range(seeds)]
        res[c] = dict(new=new, old=old)
    return res

def time_main_job(path, teachers, out) -> dict:
    "The README's main job (students distilled from the shipped teachers), timed end to end."
    t0 = time.perf_counter()
    rows = run_experiment('hapt', path=path, configs='LM,RB-KD,LM-Att,RB-KD-Att,RAB-KD', seeds=1, epochs=30, teachers=teachers, out=out,
                          progress=False)
    return dict(seconds=time.perf_counter() - t0, rows=len(rows), out=str(out), f1=dict(zip(rows['config'], rows['f1_macro'])))

def targets(b) -> list:
    "(target, value, met) for each of issue 16's targets this benchmark measures."
    e, bare, thr = b['package'], b['bare'], b['throughput']
    T = []
    for c in ('LM', 'LM-Att'):
        r = thr[c]['new']['windows_per_s'] / thr[c]['old']['windows_per_s']
        T.append((f'{c} training throughput >= 3x before (whole 30-epoch fit)', f'{r:.2f}x', r >= 3))
    for kd, st in (('RB-KD', 'LM'), ('RAB-KD', 'LM-Att')):
        r = e[kd]['epoch_seconds'] / e[st]['epoch_seconds']
        T.append((f'{kd} epoch <= 1.2x {st} epoch (teacher outputs cached)', f'{r:.2f}', r <= 1.2))
    for c in STUDENTS:
        r = e[c]['epoch_seconds'] / bare[c]
        T.append((f'{c} epoch <= 1.3x the bare loop', f'{r:.2f}', r <= 1.3))
    for t in TEACHERS:
        r = e[t]['epoch_seconds'] / b['mac_bound'][t]
        T.append((f'{t} epoch <= 1.5x its MAC bound at the measured mm rate', f'{r:.2f}', r <= 1.5))
    T.append(('teacher outputs computed once per (teacher, seed, split), read back by later fits and processes',
              f"computed {b['teacher_outputs']['computed_s']:.2f} s, read {b['teacher_outputs']['read_s']:.2f} s", b['teacher_outputs']['read_s'] < b['teacher_outputs']['computed_s'] / 5))
    m = b['matrix_projection']['minutes']
    T.append(('full hapt matrix, 3 seeds, shared teachers <= 30 min (PROJECTED from the epochs above)', f'{m:.1f} min', m <= 30))
    mj = sum(30 * e[c]['epoch_seconds'] + e[c]['teacher_seconds'] for c in STUDENTS if c != 'MM') / 60
    T.append(("README main job (5 students, shipped teachers) <= 10 min (PROJECTED: 30 x their epochs + teacher outputs)", f'{mj:.1f} min', mj <= 10))
    if 'main_job' in b:
        s = b['main_job']['seconds'] / 60
        T.append(("README main job <= 10 min (measured)", f'{s:.1f} min', s <= 10))
    if 'f1' in b:
        for c, v in b['f1'].items():
            T.append((f'{c} validation F1 over {len(v["new"])} seeds no worse with the new gradients (mean)',
                      f"{np.mean(v['new']):.4f} vs {np.mean(v['old']):.4f}", np.mean(v['new']) >= np.mean(v['old']) - 0.01))
    return T

def report(b) -> str:
    "The benchmark as markdown."
    L = ['# Training speed (issue 16)', '', f"Command: `{b['command']}`  ", f"Commit: {b['git_commit']}  ",
         f"Machine: {b['machine']}; torch threads {b['threads']}  ", f"Data: {b['data']}  ",
         f"Dense matrix multiply (2048 x 2048 `torch.mm`, same run): **{b['mm_gmacs']:.1f} GMAC/s**  ",
         f"Teachers: {b['teacher_source']}", '',
         f"Each package fit is `train_config` for {b['epochs']} epochs (teachers {b['teacher_epochs']}), batch {b['bs']}, one-cycle; "
         "its seconds per epoch leave out the teacher's outputs (computed or read once per fit) and include the validation pass, "
         "SaveModelCallback and fastai's own work. The bare loop indexes tensors, runs forward, the loss (the package's loss "
         "functions for the KD terms, cached teacher outputs), backward and Adam, plus a validation pass at the same batch size.", '',
         '| configuration | s / epoch (package) | s / epoch (bare loop) | package / bare | s / epoch before (nn.Conv2d gradients) | windows/s (30-epoch fit) | before | GMAC/s | % of mm rate |',
         '|---|---|---|---|---|---|---|---|---|']
    f = lambda v, spec: '' if v is None else format(v, spec)
    for c in b['package']:
        e, t, bare, old = b['package'][c], b['throughput'][c], b['bare'].get(c), b['old'].get(c)
        ratio = None if bare is None else e['epoch_seconds'] / bare
        L.append(f"| {c} | {e['epoch_seconds']:.2f} | {f(bare, '.2f')} | {f(ratio, '.2f')} | {f(old and old['epoch_seconds'], '.2f')} | "
                 f"{t['new']['windows_per_s']:,.0f} | {f(t.get('old', {}).get('windows_per_s'), ',.0f')} | {t['new']['gmacs']:.1f} | "
                 f"{100 * t['new']['gmacs'] / b['mm_gmacs']:.1f} |")
    to = b['teacher_outputs']
    L += ['', f"Teacher outputs (OM-Att, logits and conv4 maps of all {b['n_train']} training windows): computed in {to['computed_s']:.2f} s, "
          f"read back from its file by the next fit in {to['read_s']:.2f} s. Before, every distilled fit computed them.", '',
          '## Matrix (projected, not run)', '', b['matrix_projection']['how'], '',
          f"**{b['matrix_projection']['minutes']:.1f} min** (before: {b['matrix_projection']['minutes_before']:.1f} min).", '']
    if 'f1' in b:
        L += ['## Validation F1: new against old gradients', '', f"Same seeds, {b['f1_epochs']} epochs each; the new input gradient differs "
              "from PyTorch's in float rounding only (tested to 1e-5 in 08_conv), but training is chaotic, so single fits differ.", '',
              '| configuration | new (per seed) | old (per seed) | mean new | mean old |', '|---|---|---|---|---|']
        L += [f"| {c} | {', '.join(f'{x:.4f}' for x in v['new'])} | {', '.join(f'{x:.4f}' for x in v['old'])} | {np.mean(v['new']):.4f} | {np.mean(v['old']):.4f} |"
              for c, v in b['f1'].items()]
        L.append('')
    if 'main_job' in b:
        mj = b['main_job']
        L += ["## The README's main job (measured)", '', f"`run_experiment('hapt', configs='LM,RB-KD,LM-Att,RB-KD-Att,RAB-KD', seeds=1, epochs=30, "
              f"teachers='{b['main_job_teachers']}')` into `{mj['out']}`: **{mj['seconds'] / 60:.1f} min**, {mj['rows']} rows "
              f"(test macro F1: {', '.join(f'{k} {v:.4f}' for k, v in mj['f1'].items())}).", '']
    L += ['## Targets', '', '| target | value | met |', '|---|---|---|']
    L += [f"| {t} | {v} | {'yes' if ok else 'no'} |" for t, v, ok in targets(b)]
    return '\n'.join(L) + '\n'

def rewrite_report(out):
    "Write OUT/REPORT.md again from OUT/speed.json (after a change of the report's layout; nothing is measured)."
    (Path(out)/'REPORT.md').write_text(report(json.loads((Path(out)/'speed.json').read_text())))

@call_parse
def main(path: str = None,            # the hapt folder (default: HARK_DATA, the cache or a download)
         epochs: int = 2,             # epochs of each measured student fit
         teacher_epochs: int = 1,     # epochs of each measured teacher fit
         threads: int = 2,            # torch threads
         teachers: str = 'runs/hapt-standard-oc30-t15-s3',  # run folder with trained teachers (else untrained ones)
         f1_seeds: int = 3,           # seeds of the validation-F1 check of the new gradients (0: skip)
         f1_epochs: int = 10,         # epochs of each fit of that check
         main_job: bool = False,      # also time the README's main job end to end
         out: str = 'bench/speed-hapt'):  # output folder
    "Measure training speed; write OUT/speed.json and OUT/REPORT.md."
    torch.set_num_threads(threads)
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    data = get_data('hapt', path=path)
    m = machine()
    b = dict(command=' '.join(['python bench/speed.py'] + sys.argv[1:]), git_commit='%s%s' % (lambda c: (c[0], ' (dirty)' if c[1] else ''))(git_commit()),
             machine=f"{m['cpu']} ({m['cpu_capability']} kernels), {m['cpu_count']} cores", threads=threads, versions=versions(),
             data=f"hapt standard: {len(data.train)} train / {len(data.valid)} valid windows of {data.window} x {data.n_channels}",
             epochs=epochs, teacher_epochs=teacher_epochs, bs=data.bs, n_train=len(data.dls.train) * data.bs)
    b['mm_gmacs'] = mm_gmacs()
    tmodels, b['teacher_source'] = trained_teachers(data, teachers)
    with tempfile.TemporaryDirectory() as d:
        outputs = {'OM': stored_teacher_outputs(tmodels['OM'], data.dls.train, None, Path(d)/'OM.outputs.pt')}
        mods = attention_modules(tmodels['OM-Att'])
        t0 = time.perf_counter(); outputs['OM-Att'] = stored_teacher_outputs(tmodels['OM-Att'], data.dls.train, mods, Path(d)/'x.pt')
        computed = time.perf_counter() - t0
        t0 = time.perf_counter(); stored_teacher_outputs(tmodels['OM-Att'], data.dls.train, mods, Path(d)/'x.pt'); read = time.perf_counter() - t0
    b['teacher_outputs'] = dict(computed_s=computed, read_s=read)
    macs = {c: count_macs(get_model(CONFIGS[c].model, data.n_channels, data.n_classes, data.window), data.window, data.n_channels) for c in CONFIGS}
    b['package'], b['old'], b['bare'], b['throughput'] = {}, {}, {}, {}
    with tempfile.TemporaryDirectory() as cache:
        for c in STUDENTS + TEACHERS:
            ep = teacher_epochs if c in TEACHERS else epochs
            package_fit(c, data, tmodels, ep, cache)   # fills the teacher-output files (timed apart above); warms up
            b['package'][c] = package_fit(c, data, tmodels, ep, cache)
            b['bare'][c] = bare_epoch_seconds(c, data, tmodels, outputs, ep)
            if c in ('LM', 'LM-Att', 'RB-KD', 'RAB-KD'):
                with plain_conv_grads(): b['old'][c] = package_fit(c, data, tmodels, ep, None)   # before: no file, teacher in every fit
            print(c, b['package'][c], b['bare'][c], b['old'].get(c), flush=True)
    for c, e in b['package'].items():
        b['throughput'][c] = dict(new=fit_throughput(e['epoch_seconds'], e['teacher_seconds'], b['n_train'], macs[c]))
        if c in b['old']:
            o = b['old'][c]; b['throughput'][c]['old'] = fit_throughput(o['epoch_seconds'], o['teacher_seconds'], b['n_train'], macs[c])
    nv = len(data.valid)
    b['mac_bound'] = {t: (3 * macs[t] * b['n_train'] + macs[t] * nv) / (b['mm_gmacs'] * 1e9) for t in TEACHERS}
    e, tp = b['package'], b['teacher_outputs']['computed_s']
    teach = sum(15 * e[t]['epoch_seconds'] for t in TEACHERS) + 2 * tp
    stud = 3 * sum(30 * e[c]['epoch_seconds'] + e[c]['teacher_seconds'] for c in STUDENTS)
    old_ep = lambda c: b['old'].get(c, b['old'].get(KD_PAIRS.get(c), e[c]))['epoch_seconds']
    stud_before = 3 * sum(30 * old_ep(c) + (tp if CONFIGS[c].teacher else 0) for c in STUDENTS)
    b['matrix_projection'] = dict(minutes=(teach + stud) / 60, minutes_before=(teach + stud_before) / 60,
        how="OM and OM-Att trained once for 15 epochs (teachers shared over seeds), their outputs computed once each, then MM and the five "
            "students x 3 seeds for 30 epochs each, from the per-epoch seconds measured above (the teachers' before = after: "
            "their convolutions gain little). Evaluation, profiling and data loading of each row are not in it. 'Before' uses "
            "the nn.Conv2d epochs (MM and RB-KD-Att take their plain student's) and a teacher pass in every distilled fit.")
    if f1_seeds: b['f1'], b['f1_epochs'] = f1_check(data, ('LM', 'LM-Att'), f1_seeds, f1_epochs), f1_epochs
    if main_job:
        b['main_job_teachers'] = teachers
        b['main_job'] = time_main_job(path, teachers, out/'main-job')
    (out/'speed.json').write_text(json.dumps(b, indent=1, default=str))
    (out/'REPORT.md').write_text(report(b))
    print(report(b))
