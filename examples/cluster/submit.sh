#!/usr/bin/env bash
# Featurize a folder of images on a Spark cluster with examples/pull_and_featurize.py.
#
#   examples/cluster/submit.sh spark://master:7077 hdfs:///data/photos hdfs:///out/features.parquet
#
# Assumes sparkzoo is installed on every node (or ships a venv-pack archive, below) and that
# nodes reach a model mirror (ZOO_MIRRORS) or the Hugging Face Hub; see README "Running on a cluster".
set -euo pipefail
MASTER=${1:?master URL, e.g. spark://master:7077 (or local[4] to try it here)}
IMAGES=${2:?folder of images}
OUT=${3:?output parquet path}
MODEL=${MODEL:-resnet50}        # also: CUT=2, GLOB="*.jpg", ZOO_MIRRORS, ENV_ARCHIVE, GPUS_PER_EXECUTOR
HERE=$(cd "$(dirname "$0")/.." && pwd)

args=(--master "$MASTER"
      --conf spark.executorEnv.ZOO_HOME="${ZOO_NODE_HOME:-/tmp/zoo}"          # each node's local model cache
      --conf spark.sql.execution.arrow.maxRecordsPerBatch=256)
if [[ -n "${ZOO_MIRRORS:-}" ]]; then args+=(--conf spark.executorEnv.ZOO_MIRRORS="$ZOO_MIRRORS"); fi
if [[ -n "${ENV_ARCHIVE:-}" ]]; then   # sparkzoo and its dependencies packed with venv-pack / conda-pack
  args+=(--archives "$ENV_ARCHIVE#env" --conf spark.pyspark.python=./env/bin/python)
fi
if [[ -n "${GPUS_PER_EXECUTOR:-}" ]]; then   # GPU executors: four tasks share each GPU (decoding is CPU work)
  args+=(--conf spark.executor.resource.gpu.amount="$GPUS_PER_EXECUTOR" --conf spark.task.resource.gpu.amount=0.25
         --conf spark.executor.resource.gpu.discoveryScript="${GPU_DISCOVERY:?path of a GPU discovery script}")
fi
SPARK_SUBMIT=${SPARK_SUBMIT:-$(python3 -c 'import pyspark, os; print(os.path.join(os.path.dirname(pyspark.__file__), "bin", "spark-submit"))')}
exec "$SPARK_SUBMIT" "${args[@]}" "$HERE/pull_and_featurize.py" "$IMAGES" "$OUT" --model "$MODEL" ${CUT:+--cut "$CUT"} ${GLOB:+--glob "$GLOB"}
