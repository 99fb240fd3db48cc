#!/usr/bin/env bash
# Featurize a folder of images on a Spark cluster with examples/pull_and_featurize.py.
#
#   examples/cluster/submit.sh spark://master:7077 /shared/photos /shared/out/features.parquet
#
# Settings (environment variables, all optional):
#   MODEL=resnet50 CUT=1 GLOB='*.jpg'   what to featurize with
#   ENV_ARCHIVE=env.tar.gz              an environment for executors, from `zoo cluster-env env.tar.gz`
#                                       (else sparkzoo must be installed in PYSPARK_PYTHON on every node)
#   DEPLOY_MODE=client|cluster          client (default): the driver runs here, in this machine's Python
#                                       (DRIVER_PYTHON, else PYSPARK_DRIVER_PYTHON, else the python3 on PATH;
#                                       a local[...] master's executors too); cluster: the driver
#                                       runs on the cluster (YARN, Kubernetes; Spark runs Python drivers
#                                       in cluster mode nowhere else) with the archive's Python
#   ZOO_NODE_HOME=/local/ssd/zoo        each node's model cache, when the workers' environment does not
#                                       set ZOO_HOME itself (nothing is overridden otherwise)
#   GPUS_PER_EXECUTOR=1 GPU_DISCOVERY=/path/getGpus.sh   GPU executors; four tasks share each GPU
#   SUBMIT_DRY_RUN=1                    print the spark-submit command instead of running it
# ZOO_MIRRORS, ZOO_ALLOW_HTTP and the other fetch settings exported here reach the executors by
# themselves (the driver forwards them; README "Running on a cluster"); in cluster mode they are
# passed to the driver too, with ZOO_REGISTRY.
set -euo pipefail
MASTER=${1:?master URL, e.g. spark://master:7077 (or local[4] to try it here)}
IMAGES=${2:?folder of images}
OUT=${3:?output parquet path}
MODEL=${MODEL:-resnet50}
DEPLOY_MODE=${DEPLOY_MODE:-client}
HERE=$(cd "$(dirname "$0")/.." && pwd)
DRIVER_PYTHON=${DRIVER_PYTHON:-${PYSPARK_DRIVER_PYTHON:-$(command -v python3)}}

case "$DEPLOY_MODE" in
  client|cluster) ;;
  *) echo "submit.sh: DEPLOY_MODE must be client or cluster, not '$DEPLOY_MODE'" >&2; exit 2 ;;
esac
if [[ $DEPLOY_MODE == cluster && ( $MASTER == spark://* || $MASTER == local* ) ]]; then
  echo "submit.sh: Spark runs Python drivers in cluster mode only on YARN and Kubernetes; use DEPLOY_MODE=client with $MASTER" >&2
  exit 2
fi
if [[ $DEPLOY_MODE == cluster && -z ${ENV_ARCHIVE:-} ]]; then
  echo "submit.sh: cluster mode needs ENV_ARCHIVE (the driver runs on a node, in the archive's Python)" >&2
  exit 2
fi

args=(--master "$MASTER" --deploy-mode "$DEPLOY_MODE" --conf spark.sql.execution.arrow.maxRecordsPerBatch=256)
if [[ -n ${ZOO_NODE_HOME:-} ]]; then args+=(--conf spark.executorEnv.ZOO_HOME="$ZOO_NODE_HOME"); fi
if [[ -n ${ENV_ARCHIVE:-} ]]; then
  args+=(--archives "$ENV_ARCHIVE#env" --conf spark.pyspark.python=./env/bin/python)
  if [[ $DEPLOY_MODE == client ]]; then   # the driver is this process: it keeps this machine's Python
    args+=(--conf spark.pyspark.driver.python="$DRIVER_PYTHON")
  fi
fi
if [[ -z ${ENV_ARCHIVE:-} && $MASTER == local* ]]; then   # local executors run on this machine, in its Python
  args+=(--conf spark.pyspark.python="$DRIVER_PYTHON")
fi
if [[ $DEPLOY_MODE == cluster ]]; then    # the driver's own environment, on whichever node runs it
  case "$MASTER" in yarn*) driver_env=spark.yarn.appMasterEnv ;; *) driver_env=spark.kubernetes.driverEnv ;; esac
  for name in ZOO_MIRRORS ZOO_REGISTRY ZOO_OFFLINE ZOO_ALLOW_HTTP ZOO_FSSPEC_SCHEMES ZOO_HF_ENDPOINT ZOO_TIMEOUT \
              ZOO_RETRIES ZOO_BACKOFF ZOO_LOCK_TIMEOUT ZOO_LOCK_STALE ZOO_FORWARD; do
    if [[ -n ${!name:-} ]]; then args+=(--conf "$driver_env.$name=${!name}"); fi
  done
  if [[ -n ${ZOO_NODE_HOME:-} ]]; then args+=(--conf "$driver_env.ZOO_HOME=$ZOO_NODE_HOME"); fi
fi
if [[ -n ${GPUS_PER_EXECUTOR:-} ]]; then   # GPU executors: four tasks share each GPU (decoding is CPU work)
  args+=(--conf spark.executor.resource.gpu.amount="$GPUS_PER_EXECUTOR" --conf spark.task.resource.gpu.amount=0.25
         --conf spark.executor.resource.gpu.discoveryScript="${GPU_DISCOVERY:?path of a GPU discovery script}")
fi
SPARK_SUBMIT=${SPARK_SUBMIT:-$("$DRIVER_PYTHON" -c 'import pyspark, os; print(os.path.join(os.path.dirname(pyspark.__file__), "bin", "spark-submit"))')}
cmd=("$SPARK_SUBMIT" "${args[@]}" "$HERE/pull_and_featurize.py" "$IMAGES" "$OUT" --model "$MODEL" ${CUT:+--cut "$CUT"} ${GLOB:+--glob "$GLOB"})
if [[ -n ${SUBMIT_DRY_RUN:-} ]]; then printf '%q ' "${cmd[@]}"; echo; exit 0; fi
exec "${cmd[@]}"
