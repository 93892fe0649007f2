import sys, pandas as pd
sys.path.insert(0, '.')
from hark_nbdev.export import export_model, run_data, write_deployment
R = 'runs/hapt-standard-oc30-t15-s1-deploy'
data = run_data(R)
df = pd.DataFrame([export_model(R, c, 0, data=data, int8=True, latency=False) for c in ['LM', 'LM-Att', 'RAB-KD', 'MM', 'OM']])
write_deployment(df, R, command='python runs/hapt-standard-oc30-t15-s1-deploy/deploy_nolatency.py (no timing)')
print(df.drop(columns=['onnx', 'onnx_int8']).to_string())
