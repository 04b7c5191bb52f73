// Read by `jco componentize --bundle` (Rolldown options): the imports the
// host provides stay imports instead of being looked up in node_modules.
export default { external: [/^airlock:plugin\//] };
