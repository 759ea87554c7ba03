# The komoju-airflow image: Apache Airflow with the project's runtime requirements installed at build time, the
# `komoju` package registered as an Airflow provider (its `komoju` connection type), and the project's DAGs,
# plugins, SQL and init scripts laid out under AIRFLOW_HOME as in the repository. docker-compose.yaml mounts the
# working tree's dags/, plugins/ and include/ over the baked-in copies; a Kubernetes deployment (the Airflow Helm
# chart) runs the image as it is. The tag must match requirements.txt's apache-airflow pin (tests/deploy check it).
FROM apache/airflow:3.3.2

# Runtime requirements: requirements.txt down to its "# Test-only tools." line. apache-airflow is pinned to the
# image's own version (AIRFLOW_VERSION is set by the base image) so pip never moves Airflow itself.
COPY --chown=airflow:0 requirements.txt /tmp/komoju/requirements.txt
RUN sed '/^# Test-only tools/,$d' /tmp/komoju/requirements.txt > /tmp/komoju/runtime.txt \
    && pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/komoju/runtime.txt \
    && rm -rf /tmp/komoju

# The project under /opt/airflow (AIRFLOW_HOME). `pip install --no-deps -e` registers the provider entry point
# (pyproject.toml) without touching the dependencies installed above, and makes `import komoju` resolve to
# /opt/airflow/plugins/komoju: the folder compose mounts, so the code that runs is the code mounted.
COPY --chown=airflow:0 pyproject.toml README.md /opt/airflow/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 docker/komoju_init.py /opt/airflow/docker/komoju_init.py
RUN pip install --no-cache-dir --no-deps -e /opt/airflow \
    && mkdir -p /opt/airflow/logs && chmod 0775 /opt/airflow/logs
# (the logs folder exists in the image so that compose's named volume starts out owned by airflow, group 0)

ENV KOMOJU_SQL_DIR=/opt/airflow/include/sql
