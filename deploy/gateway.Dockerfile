# Apollo's gateway over the cfl-graph subgraphs (federation/gateway.mjs), with the npm packages the
# repository pins. Example only: see deploy/README.md.
FROM node:20-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=optional && npm cache clean --force
COPY federation ./federation
USER node
