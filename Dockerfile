# The image of `consign` (escrow workers, operator and agent commands).
FROM python:3.12-slim
RUN useradd --create-home --uid 1000 consign \
    && mkdir -p /var/lib/consign \
    && chown consign:consign /var/lib/consign
WORKDIR /src
COPY pyproject.toml README.md ./
COPY broker broker
COPY client client
COPY escrow_worker escrow_worker
RUN pip install --no-cache-dir .
USER consign
WORKDIR /var/lib/consign
CMD ["consign", "--help"]
