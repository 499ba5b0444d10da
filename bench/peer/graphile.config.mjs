// PostGraphile 5 as benchmark P2's peer (bench/peer.py): the amber preset over the project's own tables,
// in production mode, plus the two relations our schema has and the database does not declare
// (postgraphile.tags.json5). The connection string and the pool's size come from the benchmark.
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { makePgService } from "postgraphile/adaptors/pg";
import { pgSmartTagsFromFile } from "postgraphile/utils";

/** @type {GraphileConfig.Preset} */
const preset = {
  extends: [PostGraphileAmberPreset],
  plugins: [pgSmartTagsFromFile(new URL("./postgraphile.tags.json5", import.meta.url).pathname)],
  pgServices: [
    makePgService({
      connectionString: process.env.PEER_DATABASE_URL,
      schemas: ["public"],
      poolConfig: { max: Number(process.env.PEER_POOL_MAX ?? 10) },
    }),
  ],
  grafserv: {
    graphiql: false,
    watch: false,
    outputDataAsString: process.env.PEER_OUTPUT_DATA_AS_STRING === "1",
  },
  grafast: { explain: false },
};

export default preset;
