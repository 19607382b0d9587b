"""Framework agents served by andon: one call turns a framework's agent into an
`andon.Agent`. One module per framework, which alone imports it: `import andon` never
pulls a framework in."""
