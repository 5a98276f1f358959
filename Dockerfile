# The AI Proxy service image: the same server and settings as `make run`, on 0.0.0.0:80.
# The Docker official image through ECR Public's mirror (no Docker Hub pull limits in CodeBuild),
# pinned by digest so a build uses exactly the image reviewed; bump the digest to take patches.
FROM public.ecr.aws/docker/library/python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0 \
    PORT=80

WORKDIR /app
COPY requirements.txt ./
RUN pip install --no-deps -r requirements.txt

COPY service/ ./service/

# Run as an unprivileged user. Binding port 80 needs no capability: Docker (20.10+) and the ECS
# task definition set net.ipv4.ip_unprivileged_port_start=0 for the container.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin aiproxy
USER aiproxy

EXPOSE 80
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/' % os.environ.get('PORT', '80'), timeout=4)"]

CMD ["gunicorn", "--config", "python:service.server.config", "service:create_app()"]
