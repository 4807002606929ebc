// One esbuild plugin step both build scripts share: resolve an import the way esbuild would
// without the plugin (the marker keeps the nested resolve from re-entering it).
const RESOLVING = 'fedai-resolving';

/** esbuild's own resolution of `args`, or undefined when called from inside it. */
export async function resolveWithoutPlugin(build, args) {
  if (args.pluginData === RESOLVING) return undefined;
  return build.resolve(args.path, {
    kind: args.kind,
    importer: args.importer,
    resolveDir: args.resolveDir,
    pluginData: RESOLVING,
  });
}
