"""Make README.md from nbs/index.ipynb with nbconvert (Quarto, which `nbdev-readme` needs, is not
always installed). `python .ci/readme.py` writes README.md; `--check` fails if it is out of date."""
import sys, re, copy
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter
from nbconvert.preprocessors import ExecutePreprocessor

root = Path(__file__).resolve().parent.parent
_directive = re.compile(r'^\s*#\|.*$\n?', re.M)

def readme_text() -> str:
    "Execute index.ipynb without its hidden cells' source and render it as markdown."
    nb = nbformat.read(root/'nbs'/'index.ipynb', as_version=4)
    ExecutePreprocessor(timeout=600, kernel_name='python3').preprocess(nb, {'metadata': {'path': str(root/'nbs')}})
    shown = copy.deepcopy(nb)
    shown.cells = [c for c in nb.cells if not (c.cell_type == 'code' and re.search(r'^\s*#\|\s*hide', c.source, re.M))]
    for c in shown.cells:
        if c.cell_type == 'code': c.source = _directive.sub('', c.source)
    md, _ = MarkdownExporter().from_notebook_node(shown)
    md = re.sub(r'\n{3,}', '\n\n', md).strip() + '\n'
    return '<!-- Generated from nbs/index.ipynb by `python .ci/readme.py`: edit the notebook, not this file. -->\n\n' + md

if __name__ == '__main__':
    txt, dst = readme_text(), root/'README.md'
    if '--check' in sys.argv:
        if not dst.exists() or dst.read_text() != txt:
            sys.exit('README.md is out of sync with nbs/index.ipynb: run `python .ci/readme.py` and commit README.md.')
        print('README.md is in sync with nbs/index.ipynb')
    else:
        dst.write_text(txt); print(f'wrote {dst}')
