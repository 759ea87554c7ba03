import { Badge, Box, Code, Heading, HStack, Spinner, Stack, Text } from "@chakra-ui/react";
import type { ReactNode } from "react";

import { useHostColorMode, useHostLanguage } from "../host";
import { languageName, messagesFor } from "../messages";
import { useHello } from "./useHello";

const Fact = ({ label, children }: { readonly label: string; readonly children: ReactNode }) => (
  <HStack gap={3}>
    <Text color="fg.muted" minW="10rem">
      {label}
    </Text>
    {children}
  </HStack>
);

/** The nav page (destination "nav"): for now, what the host tells the plugin and whether its API answers. */
export const KomojuPage = () => {
  const language = useHostLanguage();
  const colorMode = useHostColorMode();
  const hello = useHello();
  const text = messagesFor(language);

  return (
    <Box p={6}>
      <Stack gap={5}>
        <Stack gap={1}>
          <Heading as="h1" size="2xl">
            {text.title}
          </Heading>
          <Text color="fg.muted">{text.subtitle}</Text>
        </Stack>
        <Stack borderColor="border" borderRadius="md" borderWidth="1px" gap={3} p={4}>
          <Fact label={text.language}>
            <Text data-testid="komoju-language">{languageName(language)}</Text>
            <Code>{language}</Code>
          </Fact>
          <Fact label={text.colorMode}>
            <Badge colorPalette={colorMode === "dark" ? "purple" : "yellow"} data-testid="komoju-color-mode">
              {colorMode}
            </Badge>
          </Fact>
          <Fact label={text.api}>
            <Code>GET /komoju-ui/api/hello</Code>
            {hello.status === "loading" ? (
              <HStack gap={2}>
                <Spinner size="sm" />
                <Text>{text.apiLoading}</Text>
              </HStack>
            ) : (
              <Badge colorPalette={hello.status === "ok" ? "green" : "red"} data-testid="komoju-api">
                {hello.status === "ok"
                  ? `${text.apiOk} {"ok": true}`
                  : `${text.apiError}${hello.httpStatus === undefined ? "" : ` (HTTP ${hello.httpStatus})`}`}
              </Badge>
            )}
          </Fact>
        </Stack>
      </Stack>
    </Box>
  );
};
