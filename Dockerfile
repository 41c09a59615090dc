FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md alembic.ini langgraph.json ./
COPY app ./app
COPY schema ./schema
COPY workers ./workers
COPY lgql ./lgql
COPY migrations ./migrations
COPY examples ./examples
RUN pip install --no-cache-dir .
EXPOSE 2024
CMD ["lgql", "serve", "--host", "0.0.0.0", "--port", "2024"]
