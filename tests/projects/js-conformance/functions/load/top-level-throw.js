throw new Error('boom while loading top-level-throw');
